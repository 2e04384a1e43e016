"""/v1/agents: Mistral's Agents API (beta), scoped to the caller's workspace, and
/v1/agents/completions, a chat completion made by an agent."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from alize.api.deps import MAX_PAGE, CallDep, KeyDep, PlatformDep
from alize.api.routes.chat import chat_answer
from alize.api.strict_json import StrictJSONRoute
from alize.errors import InvalidRequest
from alize.protocol.agents import AgentFields, AgentsCompletionRequest, CreateAgentRequest
from alize.services.agents import agent_chat_request

router = APIRouter(route_class=StrictJSONRoute)

ALIAS = Query(min_length=1, max_length=64, pattern=r"^[a-z]([a-z0-9_-]*[a-z0-9])?$")
PageSize = Annotated[int, Query(ge=1, le=1000)]


# What the official Python SDK (mistralai 3.7) sends as `metadata` when the caller gives none:
# its UNSET sentinel, JSON-encoded (tests/mistral-api/ERRATA.md, 5).
SDK_UNSET = "~?~unset~?~sentinel~?~"


def metadata_filter(metadata: str | None) -> dict[str, Any] | None:
    """The `metadata` filter: a JSON object in the query string."""
    if metadata is None or metadata == f'"{SDK_UNSET}"':
        return None
    try:
        value = json.loads(metadata)
    except ValueError as exc:
        raise InvalidRequest("metadata must be a JSON object", param="metadata") from exc
    if value is not None and not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object", param="metadata")
    return value


def _filters(name: str | None, search: str | None, id: str | None, metadata: str | None,
             deployment_chat: bool | None, sources: list[str] | None) -> dict[str, Any]:
    return {"name": name, "search": search, "agent_id": id, "metadata": metadata_filter(metadata),
            "deployment_chat": deployment_chat, "sources": sources}


@router.post("/v1/agents/completions")
async def agents_completion(body: AgentsCompletionRequest, call: CallDep, platform: PlatformDep,
                            request: Request) -> Response:
    chat_request = await agent_chat_request(platform.agents, platform.retriever, call, body)
    return await chat_answer(chat_request, call, platform, request)  # stream and stream_options carried over


@router.post("/v1/agents")
def create_agent(body: CreateAgentRequest, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.agents.create(key, body)


@router.get("/v1/agents")
def list_agents(key: KeyDep, platform: PlatformDep, page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
                page_size: PageSize = 20, name: str | None = None, search: str | None = None,
                id: str | None = None, metadata: str | None = None, deployment_chat: bool | None = None,
                sources: Annotated[list[str] | None, Query()] = None) -> list[dict[str, Any]]:
    agents = platform.agents.matching(key.workspace.id, **_filters(name, search, id, metadata, deployment_chat,
                                                                      sources))
    return agents[page * page_size:(page + 1) * page_size]


@router.get("/v1/agents/pages")
def list_agent_pages(key: KeyDep, platform: PlatformDep, page_size: PageSize = 20, page_token: str | None = None,
                     name: str | None = None, search: str | None = None, id: str | None = None,
                     metadata: str | None = None, deployment_chat: bool | None = None,
                     sources: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    return platform.agents.page(key.workspace.id, page_size, page_token,
                                  **_filters(name, search, id, metadata, deployment_chat, sources))


@router.get("/v1/agents/{agent_id}")
def get_agent(agent_id: str, key: KeyDep, platform: PlatformDep,
              agent_version: int | str | None = None) -> dict[str, Any]:
    return platform.agents.get(key.workspace.id, agent_id, agent_version)


@router.patch("/v1/agents/{agent_id}")
def update_agent(agent_id: str, body: AgentFields, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.agents.update(key, agent_id, body)


@router.delete("/v1/agents/{agent_id}", status_code=204)
def delete_agent(agent_id: str, key: KeyDep, platform: PlatformDep) -> Response:
    platform.agents.delete(key.workspace.id, agent_id)
    return Response(status_code=204)


@router.patch("/v1/agents/{agent_id}/version")
def switch_agent_version(agent_id: str, version: Annotated[int, Query(ge=0)], key: KeyDep,
                         platform: PlatformDep) -> dict[str, Any]:
    return platform.agents.switch(key.workspace.id, agent_id, version)


@router.get("/v1/agents/{agent_id}/versions")
def list_agent_versions(agent_id: str, key: KeyDep, platform: PlatformDep,
                        page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
                        page_size: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict[str, Any]]:
    return platform.agents.versions(key.workspace.id, agent_id, page, page_size)


@router.get("/v1/agents/{agent_id}/versions/{version}")
def get_agent_version(agent_id: str, version: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.agents.get(key.workspace.id, agent_id, version)


@router.put("/v1/agents/{agent_id}/aliases")
def put_agent_alias(agent_id: str, alias: Annotated[str, ALIAS], version: Annotated[int, Query(ge=0)], key: KeyDep,
                    platform: PlatformDep) -> dict[str, Any]:
    return platform.agents.put_alias(key.workspace.id, agent_id, alias, version)


@router.get("/v1/agents/{agent_id}/aliases")
def list_agent_aliases(agent_id: str, key: KeyDep, platform: PlatformDep) -> list[dict[str, Any]]:
    return platform.agents.aliases(key.workspace.id, agent_id)


@router.delete("/v1/agents/{agent_id}/aliases", status_code=204)
def delete_agent_alias(agent_id: str, alias: Annotated[str, ALIAS], key: KeyDep, platform: PlatformDep) -> Response:
    platform.agents.delete_alias(key.workspace.id, agent_id, alias)
    return Response(status_code=204)
