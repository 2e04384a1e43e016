"""Server-sent events: one `data: <json>` line per chunk, then `data: [DONE]`."""

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel


async def _frames(chunks: AsyncIterator[BaseModel]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield b"data: " + chunk.model_dump_json().encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def sse_response(chunks: AsyncIterator[BaseModel]) -> StreamingResponse:
    return StreamingResponse(
        _frames(chunks),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
