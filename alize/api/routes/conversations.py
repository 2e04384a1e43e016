"""/v1/conversations: Mistral's Conversations API (beta), scoped to the caller's workspace.
Start, append and restart run the model (metered as `conversations`); the rest reads."""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from alize.api.deps import MAX_PAGE, CallDep, KeyDep, PlatformDep
from alize.api.disconnect import unless_client_leaves
from alize.api.routes.agents import metadata_filter
from alize.api.sse import event_response
from alize.api.strict_json import StrictJSONRoute
from alize.protocol.conversations import (
    AppendConversationRequest,
    ConversationRequest,
    RestartConversationRequest,
)
from alize.services.metering import Call
from alize.services.platform import Platform
from alize.services.turns import Turn

router = APIRouter(route_class=StrictJSONRoute)


async def _run(platform: Platform, call: Call, request: Request, stream: bool,
               prepare: Callable[..., Turn], *args: Any) -> Response:
    """Runs a turn: `prepare(key, *args)` (start, append or restart: it reads the database,
    in a worker thread), the document_library tool if it has one, then the model, streamed
    or whole."""
    assert call.key is not None
    turn = await asyncio.to_thread(prepare, call.key, *args)
    runner = platform.conversations.runner
    gen = await runner.begin(turn, call, stream)
    if stream:
        return await event_response(runner.stream(turn, gen, call))
    return JSONResponse(await unless_client_leaves(request, runner.respond(turn, gen, call)))


@router.post("/v1/conversations")
async def start_conversation(body: ConversationRequest, call: CallDep, platform: PlatformDep,
                             request: Request) -> Response:
    return await _run(platform, call, request, bool(body.stream), platform.conversations.start, body)


@router.post("/v1/conversations/{conversation_id}")
async def append_conversation(conversation_id: str, body: AppendConversationRequest, call: CallDep,
                              platform: PlatformDep, request: Request) -> Response:
    return await _run(platform, call, request, bool(body.stream), platform.conversations.append, conversation_id,
                      body)


@router.post("/v1/conversations/{conversation_id}/restart")
async def restart_conversation(conversation_id: str, body: RestartConversationRequest, call: CallDep,
                               platform: PlatformDep, request: Request) -> Response:
    return await _run(platform, call, request, bool(body.stream), platform.conversations.restart, conversation_id,
                      body)


@router.get("/v1/conversations")
def list_conversations(key: KeyDep, platform: PlatformDep, page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
                       page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
                       metadata: str | None = None) -> list[dict[str, Any]]:
    return platform.conversations.list(key.workspace.id, page, page_size, metadata_filter(metadata))


@router.get("/v1/conversations/{conversation_id}")
def get_conversation(conversation_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.conversations.get(key.workspace.id, conversation_id)


@router.delete("/v1/conversations/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, key: KeyDep, platform: PlatformDep) -> Response:
    platform.conversations.delete(key.workspace.id, conversation_id)
    return Response(status_code=204)


@router.get("/v1/conversations/{conversation_id}/history")
def conversation_history(conversation_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.conversations.history(key.workspace.id, conversation_id)


@router.get("/v1/conversations/{conversation_id}/messages")
def conversation_messages(conversation_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.conversations.messages(key.workspace.id, conversation_id)
