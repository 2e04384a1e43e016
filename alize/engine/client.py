"""AsyncEngine: the one bridge between asyncio and the engine thread."""

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from alize.engine.core import EngineCore
from alize.engine.params import GenerationRequest, TokenEvent
from alize.errors import Overloaded, QueueFull


class Mailbox:
    """Carries the engine thread's events to one event loop: one wake-up for all of a step's
    events, not one per token.

    The engine thread appends and, unless a drain is already due, schedules one with
    call_soon_threadsafe. On uvloop (the server's loop) that signals the loop without
    releasing the GIL, so the woken loop takes the GIL only when the engine enters its next
    llama_decode, and handles the tokens while the engine decodes. asyncio's own loop writes
    to a socket there, releasing the GIL: the loop may then take it first and the engine
    waits for it, which costs time but changes nothing else."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._is_due = False  # a drain is scheduled and has not started

    def send(self, deliver: Callable[[Any], None], item: Any) -> None:
        """Calls deliver(item) on the loop, after what was sent before it (any thread)."""
        self._items.append((deliver, item))
        if not self._is_due:
            self._is_due = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                pass

    def _drain(self) -> None:
        self._is_due = False  # what is sent from now on schedules another drain: nothing waits unseen
        while self._items:
            deliver, item = self._items.popleft()
            deliver(item)


class Events:
    """One consumer's events, put by the mailbox's drain on the loop: a deque and at most
    one waiting future (what asyncio.Queue does, without its task accounting and putters,
    a token at a time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():  # done: its consumer was cancelled
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._items.popleft()


_mailboxes: dict[asyncio.AbstractEventLoop, Mailbox] = {}
_mailboxes_lock = threading.Lock()


def mailbox(loop: asyncio.AbstractEventLoop) -> Mailbox:
    """The loop's mailbox (one serves every engine and request on that loop)."""
    with _mailboxes_lock:
        box = _mailboxes.get(loop)
        if box is None:
            for closed in [other for other in _mailboxes if other.is_closed()]:
                del _mailboxes[closed]
            box = _mailboxes[loop] = Mailbox(loop)
        return box


class AsyncEngine:
    """Submit requests, receive their TokenEvents; leaving the iterator early aborts them.

    At most `capacity` requests (running + waiting) are admitted; past that a request
    is refused at once with QueueFull (HTTP 429), never queued without bound."""

    def __init__(self, core: EngineCore, capacity: int):
        self._core = core
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
        box, events = mailbox(loop), Events(loop)

        def sink_of(index: int) -> Callable[[TokenEvent], None]:
            def sink(event: TokenEvent) -> None:  # called on the engine thread
                box.send(events.put, (index, event))
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
