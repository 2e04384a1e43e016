from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from alize.api.deps import CallDep, PlatformDep
from alize.api.disconnect import unless_client_leaves
from alize.api.sse import sse_response
from alize.api.strict_json import StrictJSONRoute
from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.completions import CompletionRequest
from alize.protocol.fim import FIMCompletionRequest
from alize.services.metering import Call
from alize.services.platform import Platform

router = APIRouter(route_class=StrictJSONRoute)


def _include_usage(body: ChatCompletionRequest | FIMCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


@router.post("/v1/chat/completions")
async def chat_completion(body: ChatCompletionRequest, call: CallDep, platform: PlatformDep, request: Request) -> Response:
    return await chat_answer(body, call, platform, request)


async def chat_answer(body: ChatCompletionRequest, call: Call, platform: Platform, request: Request) -> Response:
    """A chat completion's answer, streamed or whole (agents completions make one too)."""
    gen = await platform.chat.generation(body, call, stream=bool(body.stream))
    if body.stream:
        return await sse_response(platform.chat.frames(gen, _include_usage(body)))
    result = await unless_client_leaves(request, platform.chat.respond(gen))
    return JSONResponse(result.model_dump(mode="json"))


@router.post("/v1/fim/completions")
async def fim_completion(body: FIMCompletionRequest, call: CallDep, platform: PlatformDep, request: Request) -> Response:
    gen = await platform.fim.generation(body, call, stream=bool(body.stream))
    if body.stream:
        return await sse_response(platform.fim.frames(gen, _include_usage(body)))
    result = await unless_client_leaves(request, platform.chat.respond(gen))
    return JSONResponse(result.model_dump(mode="json"))


@router.post("/v1/completions")
async def completion(body: CompletionRequest, call: CallDep, platform: PlatformDep, request: Request) -> Response:
    gen = await platform.completions.generation(body, call, stream=bool(body.stream))
    if body.stream:
        return await sse_response(platform.completions.stream(body, gen, _include_usage(body)))
    result = await unless_client_leaves(request, platform.completions.respond(body, gen))
    return JSONResponse(result.model_dump(mode="json"))
