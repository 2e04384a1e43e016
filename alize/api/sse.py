"""Server-sent events: one `data: <json>` line per chunk, then `data: [DONE]`; or named
events (conversations)."""

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from alize.errors import AlizeError


def _frame(chunk: BaseModel | bytes) -> bytes:
    return b"data: " + (chunk if isinstance(chunk, bytes) else chunk.model_dump_json().encode()) + b"\n\n"


async def _frames(first: BaseModel | bytes | None, chunks: AsyncIterator[BaseModel | bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield _frame(first)
        async for chunk in chunks:
            yield _frame(chunk)
    yield b"data: [DONE]\n\n"


async def sse_response(chunks: AsyncIterator[BaseModel | bytes]) -> StreamingResponse:
    """Starts the stream once its first chunk exists: an error raised before it
    (overload, engine failure) still becomes a JSON error response. A chunk is a model, or
    its JSON already rendered."""
    first = await anext(chunks, None)
    return StreamingResponse(
        _frames(first, chunks),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def _named_frames(first: tuple[str, dict[str, Any]] | None,
                        events: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield _event(*first)
    try:
        async for name, data in events:
            yield _event(name, data)
    except AlizeError as exc:  # after the start, an error can only be an event of its own
        yield _event("conversation.response.error", {"type": "conversation.response.error",
                                                     "message": exc.message, "code": exc.status_code})


async def event_response(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> StreamingResponse:
    """Named events (`event: <type>` then `data: <json>`), as conversations stream them;
    started once the first exists, like sse_response."""
    first = await anext(events, None)
    return StreamingResponse(_named_frames(first, events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
