"""AsyncEngine: the one bridge between asyncio and the engine thread."""

import asyncio
import threading
from collections.abc import AsyncIterator

from alize.engine.core import EngineCore
from alize.engine.params import GenerationRequest, TokenEvent
from alize.errors import QueueFull


class EventMailbox:
    """Hands TokenEvents from the engine thread to one event loop, with one wake-up for
    all the events posted before the loop gets to them (an engine step posts one per
    running sequence): each wake-up is a syscall, and a loop that wakes per event
    contends with the engine thread for the GIL while the engine finishes its step."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[TokenEvent], TokenEvent]] = []

    def post(self, queue: asyncio.Queue[TokenEvent], event: TokenEvent) -> None:
        with self._lock:
            self._pending.append((queue, event))
            if len(self._pending) > 1:
                return  # a wake-up is on its way and will take this event too
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for queue, event in pending:
            queue.put_nowait(event)


class AsyncEngine:
    """Submit a request, receive its TokenEvents; leaving the iterator early aborts it.

    At most `capacity` requests (running + waiting) are admitted; past that a request
    is refused at once with QueueFull (HTTP 429), never queued without bound."""

    def __init__(self, core: EngineCore, capacity: int):
        self._core = core
        self.capacity = capacity
        self.num_inflight = 0  # touched only on the event loop: no lock needed
        self._mailbox: EventMailbox | None = None  # for the loop of the latest request

    def check_capacity(self, num_requests: int = 1) -> None:
        if self.num_inflight + num_requests > self.capacity:
            waiting = max(0, self.num_inflight - self._core.scheduler_size)
            raise QueueFull(
                f"The model is busy: {self.num_inflight} requests running or queued "
                f"(capacity {self.capacity}). Retry later.",
                retry_after_s=1 + waiting // max(1, self._core.scheduler_size),
            )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        self.check_capacity()
        loop = asyncio.get_running_loop()
        if self._mailbox is None or self._mailbox.loop is not loop:
            self._mailbox = EventMailbox(loop)
        mailbox = self._mailbox
        events: asyncio.Queue[TokenEvent] = asyncio.Queue()

        def sink(event: TokenEvent) -> None:
            mailbox.post(events, event)

        self.num_inflight += 1
        self._core.submit(request, sink)
        is_done = False
        try:
            while not is_done:
                event = await events.get()
                is_done = event.finish_reason is not None
                yield event
        finally:
            self.num_inflight -= 1
            if not is_done:  # the consumer went away (client disconnect, cancellation)
                self._core.abort(request.request_id)
