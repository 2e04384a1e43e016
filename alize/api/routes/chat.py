from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from alize.api.deps import PlatformDep, ScopeDep
from alize.api.sse import sse_response
from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.completions import CompletionRequest
from alize.protocol.fim import FIMCompletionRequest

router = APIRouter()


def _include_usage(body: ChatCompletionRequest | FIMCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


@router.post("/v1/chat/completions")
async def chat_completion(body: ChatCompletionRequest, scope: ScopeDep, platform: PlatformDep) -> Response:
    if body.stream:
        prep, prefix = platform.chat.prepare(body, cache_scope=scope)
        return await sse_response(platform.chat.stream(prep, prefix, _include_usage(body)))
    result = await platform.chat.complete(body, cache_scope=scope)
    return JSONResponse(result.model_dump(mode="json"))


@router.post("/v1/fim/completions")
async def fim_completion(body: FIMCompletionRequest, scope: ScopeDep, platform: PlatformDep) -> Response:
    if body.stream:
        prep = platform.fim.prepare(body, cache_scope=scope)
        return await sse_response(platform.fim.stream(prep, _include_usage(body)))
    result = await platform.fim.complete(body, cache_scope=scope)
    return JSONResponse(result.model_dump(mode="json"))


@router.post("/v1/completions")
async def completion(body: CompletionRequest, scope: ScopeDep, platform: PlatformDep) -> Response:
    if body.stream:
        preps = platform.completions.prepare(body, cache_scope=scope)
        return await sse_response(platform.completions.stream(body, preps, _include_usage(body)))
    result = await platform.completions.complete(body, cache_scope=scope)
    return JSONResponse(result.model_dump(mode="json"))
