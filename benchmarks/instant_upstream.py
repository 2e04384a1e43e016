"""An OpenAI-wire engine that answers at once (no model): what a gateway adds in front of
it is the gateway's own cost, with no engine competing for the CPU.

    python benchmarks/instant_upstream.py PORT [TOKENS]
"""

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

TOKENS = int(sys.argv[2]) if len(sys.argv) > 2 else 32


def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    body = {"id": "instant", "object": "chat.completion.chunk", "created": 0, "model": "instant",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


async def chat(request: Request) -> StreamingResponse | JSONResponse:
    asked = await request.json()
    count = min(TOKENS, int(asked.get("max_tokens") or TOKENS))
    usage = {"prompt_tokens": 16, "completion_tokens": count, "total_tokens": 16 + count}
    if not asked.get("stream"):
        return JSONResponse({"id": "instant", "object": "chat.completion", "created": 0, "model": "instant",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": " tok" * count},
                                          "finish_reason": "length"}], "usage": usage})

    async def events():
        yield chunk({"role": "assistant", "content": ""})
        for _ in range(count):
            yield chunk({"content": " tok"})
        yield chunk({}, "length")
        yield chunk({}, usage=usage)
        yield "data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health", health)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
