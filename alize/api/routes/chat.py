from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from alize.api.deps import CallDep, PlatformDep
from alize.api.disconnect import unless_client_leaves
from alize.api.sse import sse_response
from alize.api.strict_json import StrictJSONRoute
from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.completions import CompletionRequest
from alize.protocol.fim import FIMCompletionRequest

router = APIRouter(route_class=StrictJSONRoute)


def _include_usage(body: ChatCompletionRequest | FIMCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


@router.post("/v1/chat/completions")
async def chat_completion(body: ChatCompletionRequest, call: CallDep, platform: PlatformDep, request: Request) -> Response:
    upstream = platform.upstream_chat
    if upstream.serves(body.model):  # a remote engine answers (services/upstream_chat.py)
        if body.stream:
            plan = await upstream.plan(body, call)
            return await sse_response(upstream.stream(plan, _include_usage(body)))
        result = await unless_client_leaves(request, upstream.complete(body, call))
        return JSONResponse(result.model_dump(mode="json"))
    if body.stream:
        prep, prefix = platform.chat.prepare(body, call)
        return await sse_response(platform.chat.stream(prep, prefix, _include_usage(body)))
    result = await unless_client_leaves(request, platform.chat.complete(body, call))
    return JSONResponse(result.model_dump(mode="json"))


@router.post("/v1/fim/completions")
async def fim_completion(body: FIMCompletionRequest, call: CallDep, platform: PlatformDep, request: Request) -> Response:
    upstream = platform.upstream_text
    if upstream.serves(body.model):
        if body.stream:
            plan = await upstream.plan_fim(body, call)
            return await sse_response(upstream.fim_stream(plan, _include_usage(body)))
        result = await unless_client_leaves(request, upstream.fim(body, call))
        return JSONResponse(result.model_dump(mode="json"))
    if body.stream:
        prep = platform.fim.prepare(body, call)
        return await sse_response(platform.fim.stream(prep, _include_usage(body)))
    result = await unless_client_leaves(request, platform.fim.complete(body, call))
    return JSONResponse(result.model_dump(mode="json"))


@router.post("/v1/completions")
async def completion(body: CompletionRequest, call: CallDep, platform: PlatformDep, request: Request) -> Response:
    upstream = platform.upstream_text
    if upstream.serves(body.model):
        if body.stream:
            plan = await upstream.plan_completion(body, call)
            return await sse_response(upstream.completion_stream(body, plan, _include_usage(body)))
        result = await unless_client_leaves(request, upstream.completion(body, call))
        return JSONResponse(result.model_dump(mode="json"))
    if body.stream:
        preps = platform.completions.prepare(body, call)
        return await sse_response(platform.completions.stream(body, preps, _include_usage(body)))
    result = await unless_client_leaves(request, platform.completions.complete(body, call))
    return JSONResponse(result.model_dump(mode="json"))
