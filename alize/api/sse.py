"""Server-sent events: one `data: <json>` line per chunk, then `data: [DONE]`."""

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel


async def _frames(first: BaseModel | None, chunks: AsyncIterator[BaseModel]) -> AsyncIterator[bytes]:
    if first is not None:
        yield b"data: " + first.model_dump_json().encode() + b"\n\n"
        async for chunk in chunks:
            yield b"data: " + chunk.model_dump_json().encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


async def sse_response(chunks: AsyncIterator[BaseModel]) -> StreamingResponse:
    """Starts the stream once its first chunk exists: an error raised before it
    (overload, engine failure) still becomes a JSON error response."""
    first = await anext(chunks, None)
    return StreamingResponse(
        _frames(first, chunks),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
