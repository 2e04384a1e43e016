"""AsyncEngine against a scripted fake of the engine thread: admission under a full
queue, events of several requests, aborts when the consumer leaves."""

import asyncio
import threading

import pytest

from alize.engine.client import AsyncEngine
from alize.engine.params import FinishReason, GenerationRequest, SamplingParams, TokenEvent
from alize.errors import QueueFull


class FakeCore:
    """Answers each request with `tokens` events from another thread, the last one finishing it."""

    scheduler_size = 2

    def __init__(self, tokens: int = 3, delay_s: float = 0.01):
        self.tokens, self.delay_s = tokens, delay_s
        self.submitted: list[str] = []
        self.aborted: list[str] = []

    def submit(self, request, sink) -> None:
        self.submitted.append(request.request_id)

        def run() -> None:
            for i in range(1, self.tokens + 1):
                threading.Event().wait(self.delay_s)
                if request.request_id in self.aborted:
                    return
                reason = FinishReason.LENGTH if i == self.tokens else None
                sink(TokenEvent("x", 1, i, reason))

        threading.Thread(target=run, daemon=True).start()

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


def requests(prefix: str, n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"{prefix}{i}", [1, 2], SamplingParams(max_tokens=3)) for i in range(n)]


async def drain(engine: AsyncEngine, reqs: list[GenerationRequest]) -> list[tuple[int, TokenEvent]]:
    return [item async for item in engine.generate_many(reqs)]


def test_all_choices_arrive_and_capacity_returns():
    async def main():
        engine = AsyncEngine(FakeCore(), capacity=4)
        events = await asyncio.wait_for(drain(engine, requests("a", 3)), 5)
        finished = sorted(i for i, e in events if e.finish_reason is not None)
        assert finished == [0, 1, 2]
        assert engine.num_inflight == 0

    asyncio.run(main())


def test_requests_that_do_not_fit_are_refused_whole_never_hang():
    async def main():
        core = FakeCore(tokens=5)
        engine = AsyncEngine(core, capacity=3)
        # Two requests of n=2 started in the same loop turn: only one fits; the other must
        # fail with QueueFull at once, not wait forever on choices that never started.
        results = await asyncio.wait_for(
            asyncio.gather(drain(engine, requests("a", 2)), drain(engine, requests("b", 2)),
                           return_exceptions=True), 5)
        assert sum(isinstance(r, QueueFull) for r in results) == 1
        assert sum(isinstance(r, list) for r in results) == 1
        assert len(core.submitted) == 2  # nothing of the refused request reached the engine
        assert engine.num_inflight == 0
        with pytest.raises(QueueFull):
            await drain(engine, requests("c", 4))

    asyncio.run(main())


def test_leaving_early_aborts_the_unfinished_and_frees_capacity():
    async def main():
        core = FakeCore(tokens=50)
        engine = AsyncEngine(core, capacity=2)
        stream = engine.generate_many(requests("a", 2))
        await anext(stream)
        await stream.aclose()
        assert sorted(core.aborted) == ["a0", "a1"]
        assert engine.num_inflight == 0

    asyncio.run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_mailbox_delivers_in_order_and_wakes_the_loop_once_for_what_waits(loop_kind):
    """Events from several threads arrive in each thread's order; those sent while the loop
    is busy are delivered by one wake-up (one drain), on asyncio's loop as on uvloop's."""
    import uvloop

    from alize.engine.client import Mailbox

    async def main() -> tuple[dict[int, list[int]], int]:
        box = Mailbox(asyncio.get_running_loop())
        drains = 0
        drain = box._drain

        def counted() -> None:
            nonlocal drains
            drains += 1
            drain()

        box._drain = counted  # type: ignore[method-assign]
        got: dict[int, list[int]] = {0: [], 1: [], 2: []}
        done = asyncio.Event()

        def deliver(item: tuple[int, int]) -> None:
            got[item[0]].append(item[1])
            if sum(map(len, got.values())) == 300:
                done.set()

        senders = [threading.Thread(target=lambda k=k: [box.send(deliver, (k, i)) for i in range(100)])
                   for k in range(3)]
        for sender in senders:  # the loop is busy (here, blocked) while they send
            sender.start()
        for sender in senders:
            sender.join()
        await asyncio.wait_for(done.wait(), 5)
        return got, drains

    got, drains = (uvloop.run if loop_kind == "uvloop" else asyncio.run)(main())
    assert got == {k: list(range(100)) for k in range(3)}
    assert drains == 1


def test_events_wait_for_a_put_and_a_cancelled_consumer_does_not_break_the_next_put():
    from alize.engine.client import Events

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        events = Events(loop)
        events.put("ready")  # put before anyone waits: returned at once
        got = [await events.get()]
        waiting = asyncio.ensure_future(events.get())
        await asyncio.sleep(0)
        loop.call_later(0.01, events.put, "later")
        got.append(await asyncio.wait_for(waiting, 5))
        cancelled = asyncio.ensure_future(events.get())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        events.put("after")  # its waiter is done: no InvalidStateError, the item stays
        got.append(await events.get())
        return got

    assert asyncio.run(main()) == ["ready", "later", "after"]
