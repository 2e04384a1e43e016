"""AsyncEngine: the one bridge between asyncio and the engine thread."""

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from alize.engine.core import EngineCore
from alize.engine.params import GenerationRequest, TokenEvent
from alize.errors import Overloaded, QueueFull


class Courier:
    """Carries the engine thread's events to the event loops, on a thread of its own.

    The engine thread only appends to a deque and sets an Event. Waking a loop itself (a write
    to its self-pipe) would release the GIL, which the woken loop takes to handle the token,
    and the engine thread then waited for it before its next llama_decode: 3-4% of a
    one-sequence step, measured with py-spy. The courier wakes the loops while the engine is
    inside llama_decode, and one wake-up carries all of a step's events for a loop."""

    def __init__(self, name: str):
        self._items: deque[tuple[asyncio.AbstractEventLoop, Callable[[Any], None], Any]] = deque()
        self._ready = threading.Event()
        threading.Thread(target=self._run, name=f"{name}-courier", daemon=True).start()

    def send(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Any], None], item: Any) -> None:
        """Calls deliver(item) on the loop, after what was sent before it."""
        self._items.append((loop, deliver, item))
        self._ready.set()

    def _run(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()  # what is sent from now on sets it again: nothing waits unseen
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Any], None], Any]]] = {}
            while self._items:
                loop, deliver, item = self._items.popleft()
                by_loop.setdefault(loop, []).append((deliver, item))
            for loop, calls in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_deliver_all, calls)
                except RuntimeError:  # the loop is closed: nobody waits for these any more
                    pass


def _deliver_all(calls: list[tuple[Callable[[Any], None], Any]]) -> None:
    for deliver, item in calls:
        deliver(item)


_courier: Courier | None = None
_courier_lock = threading.Lock()


def courier() -> Courier:
    """The process's courier, started on first use: one serves every engine."""
    global _courier
    with _courier_lock:
        if _courier is None:
            _courier = Courier("alize")
        return _courier


class AsyncEngine:
    """Submit requests, receive their TokenEvents; leaving the iterator early aborts them.

    At most `capacity` requests (running + waiting) are admitted; past that a request
    is refused at once with QueueFull (HTTP 429), never queued without bound."""

    def __init__(self, core: EngineCore, capacity: int):
        self._core = core
        self._courier = courier()
        self.capacity = capacity
        self.num_inflight = 0  # touched only on the event loop: no lock needed
        self.is_closed = False

    def close(self) -> None:
        """The server is stopping: admit nothing more, and end what runs (each consumer
        gets a SHUTDOWN finish with the text generated so far)."""
        self.is_closed = True
        self._core.abort_all()

    def check_capacity(self, num_requests: int = 1) -> None:
        if self.is_closed:
            raise Overloaded("The server is shutting down; retry on another replica or in a moment")
        if self.num_inflight + num_requests > self.capacity:
            waiting = max(0, self.num_inflight - self._core.scheduler_size)
            raise QueueFull(
                f"The model is busy: {self.num_inflight} requests running or queued "
                f"(capacity {self.capacity}). Retry later.",
                retry_after_s=1 + waiting // max(1, self._core.scheduler_size),
            )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        async for _, event in self.generate_many([request]):
            yield event

    async def generate_many(self, requests: list[GenerationRequest]) -> AsyncIterator[tuple[int, TokenEvent]]:
        """Yields (index, event) for all `requests` as the engine produces them. They are
        admitted together or not at all: the capacity check and the booking happen with no
        await between them, so no other request can take the room in between."""
        self.check_capacity(len(requests))
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()

        def sink_of(index: int) -> Callable[[TokenEvent], None]:
            def sink(event: TokenEvent) -> None:  # called on the engine thread
                self._courier.send(loop, events.put_nowait, (index, event))
            return sink

        self.num_inflight += len(requests)
        unfinished = set(range(len(requests)))
        for i, request in enumerate(requests):
            self._core.submit(request, sink_of(i))
        try:
            while unfinished:
                index, event = await events.get()
                if event.finish_reason is not None:
                    unfinished.discard(index)
                    self.num_inflight -= 1
                yield index, event
        finally:
            self.num_inflight -= len(unfinished)
            for index in unfinished:  # the consumer went away (client disconnect, cancellation)
                self._core.abort(requests[index].request_id)
