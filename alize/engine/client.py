"""AsyncEngine: the one bridge between asyncio and the engine thread."""

import asyncio
from collections.abc import AsyncIterator

from alize.engine.core import EngineCore
from alize.engine.params import GenerationRequest, TokenEvent


class AsyncEngine:
    """Submit a request, receive its TokenEvents; leaving the iterator early aborts it."""

    def __init__(self, core: EngineCore):
        self._core = core

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[TokenEvent] = asyncio.Queue()

        def sink(event: TokenEvent) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        self._core.submit(request, sink)
        is_done = False
        try:
            while not is_done:
                event = await events.get()
                is_done = event.finish_reason is not None
                yield event
        finally:
            if not is_done:  # the consumer went away (client disconnect, cancellation)
                self._core.abort(request.request_id)
