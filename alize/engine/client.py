"""AsyncEngine: the one bridge between asyncio and the engine thread."""

import asyncio
from collections.abc import AsyncIterator

from alize.engine.core import EngineCore
from alize.engine.params import GenerationRequest, TokenEvent
from alize.errors import QueueFull


class AsyncEngine:
    """Submit a request, receive its TokenEvents; leaving the iterator early aborts it.

    At most `capacity` requests (running + waiting) are admitted; past that a request
    is refused at once with QueueFull (HTTP 429), never queued without bound."""

    def __init__(self, core: EngineCore, capacity: int):
        self._core = core
        self.capacity = capacity
        self.num_inflight = 0  # touched only on the event loop: no lock needed

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
        events: asyncio.Queue[TokenEvent] = asyncio.Queue()

        def sink(event: TokenEvent) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

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
