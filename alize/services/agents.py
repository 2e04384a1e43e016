"""Agents as a use case: a model, instructions, tools and completion arguments kept per
workspace, each update a new version, usable by id in /v1/agents/completions (and
conversations). What an agent asks of the server is checked when it is saved: a chat model
that exists, tools this server can run, handoffs to agents of the same workspace."""

import asyncio
import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from alize.errors import InvalidRequest, NotFound
from alize.protocol.agents import AgentFields, AgentsCompletionRequest, CompletionArgs
from alize.protocol.chat import ChatCompletionRequest
from alize.services.guardrails import parse_guardrails
from alize.services.libraries import check_libraries
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.retrieval import TOOL as RETRIEVAL_TOOL
from alize.services.retrieval import Retriever, grounded, last_user_text, library_ids, needs_confirmation
from alize.services.tools import functions_of
from alize.store import agents as agent_store
from alize.store.accounts import KeyInfo
from alize.store.agents import AgentRecord, AliasRecord, Missing
from alize.store.db import Database

# Built-in tools of La Plateforme that need the internet, a sandbox or an image model.
NOT_OFFERED = {
    "web_search": "a web search provider",
    "web_search_premium": "a web search provider",
    "code_interpreter": "a code sandbox",
    "image_generation": "an image generation model",
    "connector": "a connector (MCP) gateway",
}
SOURCE = "api"


def check_tools(tools: list[dict[str, Any]]) -> None:
    """A 400 that names any tool this server cannot run; function tools checked as chat's."""
    for i, tool in enumerate(tools):
        kind = tool.get("type", "function") if isinstance(tool, dict) else None
        if kind in NOT_OFFERED:
            raise InvalidRequest(f"tools[{i}]: the {kind} tool needs {NOT_OFFERED[kind]}, which this server "
                                 "does not offer", param="tools")
        if kind == "document_library":
            if not isinstance(tool.get("library_ids"), list) or not tool["library_ids"] or not all(
                    isinstance(x, str) for x in tool["library_ids"]):
                raise InvalidRequest(f"tools[{i}]: a document_library tool needs library_ids, a list of library ids",
                                     param="tools")
            _check_configuration(i, tool.get("tool_configuration"))
    # the rest must be functions: names, schemas, no name twice
    functions_of([t for t in tools if not (isinstance(t, dict) and t.get("type") == "document_library")])


def _check_configuration(i: int, config: Any) -> None:
    """A document_library tool's tool_configuration: lists of the names of its functions,
    of which it has one, document_library (what include, exclude and requires_confirmation
    name)."""
    if config is None:
        return
    where = f"tools[{i}].tool_configuration"
    if not isinstance(config, dict):
        raise InvalidRequest(f"{where} must be an object", param="tools")
    for name, names in config.items():
        if name not in ("include", "exclude", "requires_confirmation"):
            raise InvalidRequest(f"{where}: unknown field {name!r} (include, exclude, requires_confirmation)",
                                 param="tools")
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidRequest(f"{where}.{name} must be a list of tool names", param="tools")
        for other in set(names) - {RETRIEVAL_TOOL}:
            raise InvalidRequest(f"{where}.{name}: the document_library tool has one function, "
                                 f"{RETRIEVAL_TOOL}, and no {other!r}", param="tools")


def check_guardrails(guardrails: list[dict[str, Any]] | None, hub: ModelHub) -> None:
    """Guardrails this server can run (services/guardrails.py): a 400 that names any other."""
    parse_guardrails(guardrails, hub)


def _now() -> datetime:
    return datetime.now(UTC)


def new_agent_id() -> str:
    return "ag_" + secrets.token_hex(16)


class AgentService:
    def __init__(self, db: Database, hub: ModelHub):
        self.db = db
        self.hub = hub

    # -- what an agent may hold -------------------------------------------------
    def _checked(self, key: KeyInfo, fields: AgentFields, agent_id: str | None = None) -> dict[str, Any]:
        """The fields set, as stored: each checked against what this server can run and
        what the key may use. A null model or name leaves it as it is."""
        given = fields.model_dump(mode="json", exclude_unset=True)
        for required in ("model", "name"):
            if given.get(required, "") is None:
                del given[required]
        if fields.model is not None:
            self.check_model(key, fields.model)
        if fields.tools is not None:
            self.check_tools(key, fields.tools)
        check_guardrails(fields.guardrails, self.hub)
        for handoff in fields.handoffs or []:
            if handoff == agent_id:
                raise InvalidRequest("an agent cannot hand off to itself", param="handoffs")
            self.record(key.workspace.id, handoff)  # a 404 for an agent this workspace does not have
        if "completion_args" in given:
            given["completion_args"] = (fields.completion_args or CompletionArgs()).model_dump(mode="json")
        return given

    def check_tools(self, key: KeyInfo, tools: list[dict[str, Any]]) -> None:
        """Tools this server can run, libraries the key's workspace sees."""
        check_tools(tools)
        check_libraries(self.db, key.workspace.id, tools)

    def check_model(self, key: KeyInfo, model_id: str) -> None:
        """A 404 for a model unknown or not the key's, a 400 for one that does not chat."""
        self.hub.card(model_id, key.models)
        self.hub.capable(model_id, "completion_chat")

    # -- agents -----------------------------------------------------------------
    def create(self, key: KeyInfo, fields: AgentFields) -> dict[str, Any]:
        config = {"completion_args": CompletionArgs().model_dump(mode="json"), "tools": [],
                  **self._checked(key, fields)}
        return agent_out(agent_store.create(self.db, key.workspace.id, new_agent_id(), config, _now()))

    def record(self, workspace_id: str, agent_id: str, ref: int | str | None = None) -> AgentRecord:
        """The agent at a version (a number, an alias; None: the current one), or a 404."""
        record: AgentRecord = self._store(agent_store.get, workspace_id, agent_id, ref)
        return record

    def get(self, workspace_id: str, agent_id: str, ref: int | str | None = None) -> dict[str, Any]:
        return agent_out(self.record(workspace_id, agent_id, ref))

    def update(self, key: KeyInfo, agent_id: str, fields: AgentFields) -> dict[str, Any]:
        workspace_id = key.workspace.id
        self.record(workspace_id, agent_id)  # a 404 before anything else
        change = self._checked(key, fields, agent_id)
        if "version_message" not in change:
            change["version_message"] = None  # a message describes its own version only
        return agent_out(self._store(agent_store.add_version, workspace_id, agent_id,
                                     lambda config: {**config, **change}, _now()))

    def switch(self, workspace_id: str, agent_id: str, version: int) -> dict[str, Any]:
        return agent_out(self._store(agent_store.set_version, workspace_id, agent_id, version, _now()))

    def delete(self, workspace_id: str, agent_id: str) -> None:
        self._store(agent_store.remove, workspace_id, agent_id)

    def versions(self, workspace_id: str, agent_id: str, page: int, page_size: int) -> list[dict[str, Any]]:
        return [agent_out(r) for r in self._store(agent_store.list_versions, workspace_id, agent_id, page, page_size)]

    def _store(self, operation: Any, *args: Any) -> Any:
        """A store operation, its Missing translated into a 404 once, here."""
        try:
            return operation(self.db, *args)
        except Missing as exc:
            raise NotFound(str(exc), param="agent_id") from exc

    # -- aliases ----------------------------------------------------------------
    def put_alias(self, workspace_id: str, agent_id: str, alias: str, version: int) -> dict[str, Any]:
        return alias_out(self._store(agent_store.put_alias, workspace_id, agent_id, alias, version, _now()))

    def aliases(self, workspace_id: str, agent_id: str) -> list[dict[str, Any]]:
        return [alias_out(a) for a in self._store(agent_store.aliases, workspace_id, agent_id)]

    def delete_alias(self, workspace_id: str, agent_id: str, alias: str) -> None:
        self._store(agent_store.delete_alias, workspace_id, agent_id, alias)

    # -- lists ------------------------------------------------------------------
    def matching(self, workspace_id: str, name: str | None = None, search: str | None = None,
                 agent_id: str | None = None, metadata: dict[str, Any] | None = None,
                 deployment_chat: bool | None = None, sources: list[str] | None = None) -> list[dict[str, Any]]:
        """The workspace's agents (current versions, newest first) that pass every filter."""
        def keep(agent: dict[str, Any]) -> bool:
            return ((name is None or agent["name"] == name)
                    and (search is None or search.lower() in agent["name"].lower() or search in agent["id"])
                    and (agent_id is None or agent["id"] == agent_id)
                    and all((agent.get("metadata") or {}).get(k) == v for k, v in (metadata or {}).items())
                    and (deployment_chat is None or agent["deployment_chat"] == deployment_chat)
                    and (not sources or agent["source"] in sources))
        return [a for a in map(agent_out, agent_store.list_current(self.db, workspace_id)) if keep(a)]

    def page(self, workspace_id: str, page_size: int, page_token: str | None, **filters: Any) -> dict[str, Any]:
        """A page of `matching` after the cursor: {object, data, next_page_token}."""
        agents = self.matching(workspace_id, **filters)
        start = _start_after(agents, _decoded(page_token)) if page_token else 0
        data = agents[start:start + page_size]
        more = start + page_size < len(agents)
        return {"object": "list", "data": data, "next_page_token": _cursor(data[-1]) if more and data else None}

    # -- /v1/agents/completions -------------------------------------------------
    def completing(self, workspace_id: str, agent_id: str, version: int | None = None) -> AgentRecord:
        """The agent, at a version (None: the current one), if it can make chat completions
        outside a conversation; else a 404 or a 400."""
        record = self.record(workspace_id, agent_id, version)
        if needs_confirmation(record.config.get("tools")):
            raise InvalidRequest("the agent's document_library tool waits for the client's confirmation before it "
                                 "searches (tool_configuration.requires_confirmation), which only a conversation can "
                                 "ask for: use /v1/conversations", param="agent_id")
        return record

    def chat_request(self, workspace_id: str, request: AgentsCompletionRequest,
                     version: int | None = None) -> tuple[ChatCompletionRequest, list[str]]:
        """The chat completion the agent (at `version`; None: its current one) makes of the
        request (its model, its instructions as the first system message, its function tools
        before the request's, its completion arguments where the request leaves them unset)
        and the libraries it searches."""
        agent = self.completing(workspace_id, request.agent_id, version).config
        given = request.model_dump(exclude_unset=True, exclude={"agent_id", "model"})
        return (ChatCompletionRequest.model_validate(chat_body(agent, given.pop("messages"), given)),
                library_ids(agent.get("tools")))


async def agent_chat_request(agents: AgentService, retriever: Retriever, call: Call,
                             request: AgentsCompletionRequest, version: int | None = None) -> ChatCompletionRequest:
    """What an agent completion runs, for /v1/agents/completions and batch jobs alike: the
    chat completion the agent makes of the request, with what its document libraries hold
    on the last user message as context before that message."""
    assert call.key is not None
    chat_request, libraries = await asyncio.to_thread(agents.chat_request, call.key.workspace.id, request, version)
    given = chat_request.model_dump(mode="json", exclude_unset=True)
    query = last_user_text(given["messages"]) if libraries else None
    if not query:
        return chat_request
    found = await retriever.search(call, libraries, query)
    return ChatCompletionRequest.model_validate({**given, "messages": grounded(given["messages"], found)})


def chat_body(config: dict[str, Any], messages: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
    """The chat completion an agent's configuration (model, instructions, tools,
    completion_args) makes of `messages`: its instructions as the first system message, its
    function tools before those of `overrides`, whose arguments win over its own; its
    guardrails and those of `overrides` all apply."""
    overrides = dict(overrides)
    args = {k: v for k, v in (config.get("completion_args") or {}).items() if v is not None and k not in overrides}
    if args.get("tool_choice") == "auto":
        del args["tool_choice"]
    if config.get("instructions"):
        messages = [{"role": "system", "content": config["instructions"]}, *messages]
    tools = [*(t for t in config.get("tools") or [] if t.get("type", "function") == "function"),
             *(overrides.pop("tools", None) or [])]
    guardrails = [*(config.get("guardrails") or []), *(overrides.pop("guardrails", None) or [])]
    return {**args, **overrides, "model": config["model"], "messages": messages, "tools": tools or None,
            "guardrails": guardrails or None}


def agent_out(record: AgentRecord) -> dict[str, Any]:
    config = record.config
    return {
        "object": "agent", "id": record.id, "version": record.version, "versions": record.versions,
        "model": config["model"], "name": config["name"], "description": config.get("description"),
        "instructions": config.get("instructions"), "tools": config.get("tools") or [],
        "completion_args": config.get("completion_args") or CompletionArgs().model_dump(mode="json"),
        "guardrails": config.get("guardrails"), "handoffs": config.get("handoffs"),
        "metadata": config.get("metadata"), "version_message": config.get("version_message"),
        "deployment_chat": bool(config.get("deployment_chat")), "source": SOURCE,
        "created_at": record.created_at.isoformat(timespec="microseconds"),
        "updated_at": record.updated_at.isoformat(timespec="microseconds"),
    }


def alias_out(record: AliasRecord) -> dict[str, Any]:
    return {"alias": record.alias, "version": record.version, "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat()}


def _cursor(agent: dict[str, Any]) -> str:
    raw = json.dumps([agent["created_at"], agent["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decoded(token: str) -> list[str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("page_token is not a token this server gave", param="page_token") from exc
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise InvalidRequest("page_token is not a token this server gave", param="page_token")
    return value


def _start_after(agents: list[dict[str, Any]], cursor: list[str]) -> int:
    """Where the page after a cursor starts: at the first agent older than the cursor's (the
    list is newest first, by creation then id), whether or not that agent still exists."""
    created, agent_id = cursor
    return next((i for i, agent in enumerate(agents) if (agent["created_at"], agent["id"]) < (created, agent_id)),
                len(agents))
