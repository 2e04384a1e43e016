"""Conversations as a use case: entries kept in order per workspace; each start, append or
restart runs the model once on the conversation so far (an agent's version, or a model with
its instructions, tools and completion arguments) through the chat service, which meters
it. A function call comes back as `function.call` entries for the client to run; its
`function.result` entries continue the conversation (the SDK's RunContext does both).
Running a turn is services/turns.py's job."""

import asyncio
from datetime import UTC, datetime
from typing import Any

from alize.errors import InvalidRequest, NotFound
from alize.protocol.conversations import (
    AppendConversationRequest,
    ConversationRequest,
    Inputs,
    RestartConversationRequest,
    ToolCallConfirmation,
)
from alize.services.agents import AgentService, check_guardrails
from alize.services.chat import ChatService
from alize.services.handoffs import handoffs_of
from alize.services.metering import Call
from alize.services.retrieval import Retriever
from alize.services.turns import Turn, TurnRunner, new_id, now_text
from alize.store import conversations as store
from alize.store.accounts import KeyInfo
from alize.store.agents import AgentRecord
from alize.store.conversations import Missing
from alize.store.db import Database

ENTRY_TYPES = ("message.input", "message.output", "function.call", "function.result")
SETTINGS = ("agent_id", "agent_version", "model", "instructions", "tools", "completion_args", "guardrails", "name",
            "description", "metadata")


class ConversationService:
    def __init__(self, db: Database, agents: AgentService, chat: ChatService, retriever: Retriever):
        self.db = db
        self.agents = agents
        self.runner = TurnRunner(chat, retriever, self._activate, self._save)

    # -- turns --------------------------------------------------------------------
    def start(self, key: KeyInfo, request: ConversationRequest) -> Turn:
        args = _args(request)
        settings = request.model_dump(mode="json", include=set(SETTINGS))
        settings["completion_args"] = args or None  # what was set, over the agent's own
        if request.agent_id and request.model:
            raise InvalidRequest("give either agent_id or model, not both", param="model")
        if request.agent_id and (request.instructions or request.tools):
            raise InvalidRequest("an agent's conversation takes its instructions and tools from the agent",
                                 param="tools" if request.tools else "instructions")
        if not request.agent_id and not request.model:
            raise InvalidRequest("a conversation needs an agent_id or a model", param="model")
        check_guardrails(request.guardrails, self.agents.hub)
        if request.model:
            self.agents.check_model(key, request.model)
            self.agents.check_tools(key, request.tools or [])
        return self._prepared(Turn(key.workspace.id, new_id("conv"), settings, {}, [], self._inputs(request.inputs),
                                   request.store is not False, True, args, _execution(request)),
                              request.tool_confirmations)

    async def answer(self, request: ConversationRequest, call: Call) -> dict[str, Any]:
        """A conversation started and answered whole, as a batch job's line runs it."""
        assert call.key is not None
        turn = await asyncio.to_thread(self.start, call.key, request)
        return await self.runner.respond(turn, await self.runner.begin(turn, call, False), call)

    def append(self, key: KeyInfo, conversation_id: str, request: AppendConversationRequest) -> Turn:
        record = self._record(key.workspace.id, conversation_id)
        history = self._entries(key.workspace.id, conversation_id)
        return self._prepared(Turn(key.workspace.id, conversation_id, record.settings, {}, history,
                                   self._inputs(request.inputs, bool(request.tool_confirmations)),
                                   request.store is not False, False, _args(request), _execution(request)),
                              request.tool_confirmations)

    def restart(self, key: KeyInfo, conversation_id: str, request: RestartConversationRequest) -> Turn:
        check_guardrails(request.guardrails, self.agents.hub)
        settings = dict(self._record(key.workspace.id, conversation_id).settings)
        if request.agent_version is not None:
            settings["agent_version"] = request.agent_version
        if request.metadata is not None:
            settings["metadata"] = request.metadata
        if request.guardrails is not None:
            settings["guardrails"] = request.guardrails
        history = [{**e, "id": new_id(e["id"].split("_", 1)[0])}  # a new conversation: its entries' own ids
                   for e in self._entries(key.workspace.id, conversation_id, through=request.from_entry_id)]
        return self._prepared(Turn(key.workspace.id, new_id("conv"), settings, {}, history,
                                   self._inputs(request.inputs, bool(request.tool_confirmations)),
                                   request.store is not False, True, _args(request), _execution(request)),
                              request.tool_confirmations)

    def _prepared(self, turn: Turn, confirmations: list[ToolCallConfirmation] | None = None) -> Turn:
        """The turn with what it runs with: the agent's version (its model, instructions,
        tools, handoffs) with the conversation's own completion_args over its own; or the
        conversation's model, instructions, tools and completion_args. A search that waited
        for a confirmation is answered, and resumes with the agent that asked for it."""
        _confirm(turn, confirmations or [])
        settings = turn.settings
        if not settings.get("agent_id"):
            turn.config = {k: settings.get(k) for k in ("model", "instructions", "tools", "completion_args",
                                                          "guardrails")}
            return turn
        self._activate(turn, self.agents.record(turn.workspace_id, settings["agent_id"], settings.get("agent_version")))
        args = {**(turn.config.get("completion_args") or {}), **(settings.get("completion_args") or {})}
        turn.config = {**turn.config, "completion_args": args}
        asker = (turn.confirmed or {}).get("agent_id")
        if asker and turn.agent is not None and asker != turn.agent.id:  # an agent handed to, in the turn that paused
            try:
                self._activate(turn, self.agents.record(turn.workspace_id, asker))
            except NotFound:
                pass  # deleted since: the conversation's agent answers
        return turn

    def _activate(self, turn: Turn, agent: AgentRecord) -> None:
        """Makes `agent` the one answering the turn, with the handoffs it offers (to agents
        that still exist)."""
        guardrails = [*(agent.config.get("guardrails") or []), *(turn.settings.get("guardrails") or [])]
        turn.agent, turn.config = agent, {**agent.config, "guardrails": guardrails or None}
        reachable = []
        for agent_id in agent.config.get("handoffs") or []:
            try:
                reachable.append(self.agents.record(turn.workspace_id, agent_id))
            except NotFound:
                continue  # deleted since: not offered
        turn.handoffs = handoffs_of(reachable)

    @staticmethod
    def _inputs(inputs: Inputs, may_be_empty: bool = False) -> list[dict[str, Any]]:
        """The new entries, each with its id and time: a string is one user message. None
        are needed when the request answers a tool call that waits for a confirmation."""
        if isinstance(inputs, str):
            inputs = [{"role": "user", "content": inputs}] if inputs else []
        now, out = now_text(), []
        for i, given in enumerate(inputs):
            kind = given.get("type") or ("function.result" if "tool_call_id" in given else "message.input")
            if kind not in ENTRY_TYPES:
                raise InvalidRequest(f"inputs[{i}]: entries of type {kind!r} are not taken here (only "
                                     f"{', '.join(ENTRY_TYPES)})", param="inputs")
            # ids are the server's own (entries are found by them), whatever the client sent, and
            # so is the confirmation status of the server's own tool calls
            entry = {k: v for k, v in given.items() if v is not None and k != "confirmation_status"}
            prefix = {"function.result": "fr", "function.call": "fc"}.get(kind, "msg")
            entry.update(object="entry", type=kind, id=new_id(prefix), created_at=now, completed_at=now)
            if kind == "message.output":
                entry["role"] = "assistant"
            _check_entry(i, entry)
            out.append(entry)
        if not out and not may_be_empty:
            raise InvalidRequest("inputs must hold at least one entry", param="inputs")
        return out

    def _save(self, turn: Turn) -> None:
        outputs = turn.outputs
        if not turn.store:
            return
        now = datetime.now(UTC)
        if turn.is_new:
            store.create(self.db, turn.workspace_id, turn.conversation_id, turn.settings,
                         [*turn.history, *turn.inputs, *outputs], now)
        else:
            store.append(self.db, turn.workspace_id, turn.conversation_id, [*turn.inputs, *outputs], now,
                         [turn.confirmed] if turn.confirmed is not None else [])

    # -- reading ------------------------------------------------------------------
    def _record(self, workspace_id: str, conversation_id: str) -> store.ConversationRecord:
        try:
            return store.get(self.db, workspace_id, conversation_id)
        except Missing as exc:
            raise NotFound(str(exc), param="conversation_id") from exc

    def _entries(self, workspace_id: str, conversation_id: str, through: str | None = None) -> list[dict[str, Any]]:
        try:
            return store.entries(self.db, workspace_id, conversation_id, through)
        except Missing as exc:
            raise NotFound(str(exc), param="from_entry_id" if through else "conversation_id") from exc

    def get(self, workspace_id: str, conversation_id: str) -> dict[str, Any]:
        return conversation_out(self._record(workspace_id, conversation_id))

    def list(self, workspace_id: str, page: int, page_size: int,
             metadata: dict[str, Any] | None) -> list[dict[str, Any]]:
        records = store.list_page(self.db, workspace_id, page, page_size)
        return [conversation_out(r) for r in records
                if all((r.settings.get("metadata") or {}).get(k) == v for k, v in (metadata or {}).items())]

    def history(self, workspace_id: str, conversation_id: str) -> dict[str, Any]:
        return {"object": "conversation.history", "conversation_id": conversation_id,
                "entries": self._entries(workspace_id, conversation_id)}

    def messages(self, workspace_id: str, conversation_id: str) -> dict[str, Any]:
        entries = self._entries(workspace_id, conversation_id)
        return {"object": "conversation.messages", "conversation_id": conversation_id,
                "messages": [e for e in entries if e["type"] in ("message.input", "message.output")]}

    def delete(self, workspace_id: str, conversation_id: str) -> None:
        try:
            store.remove(self.db, workspace_id, conversation_id)
        except Missing as exc:
            raise NotFound(str(exc), param="conversation_id") from exc


def _args(request: AppendConversationRequest) -> dict[str, Any]:
    """This turn's completion arguments, set ones only."""
    if request.completion_args is None:
        return {}
    args = request.completion_args.model_dump(mode="json", exclude_unset=True)
    return {k: v for k, v in args.items() if v is not None}


def _execution(request: AppendConversationRequest) -> str:
    return request.handoff_execution or "server"


def _confirm(turn: Turn, confirmations: list[ToolCallConfirmation]) -> None:
    """Applies the request's tool_confirmations to the server-side tool call the conversation
    waits on (the turn resumes with it, turn.confirmed): each must name that call, and the
    call must be answered before the conversation goes on."""
    pending = {e["tool_call_id"]: e for e in turn.history
               if e["type"] == "function.call" and e.get("confirmation_status") == "pending"}
    answered: set[str] = set()
    for i, confirmation in enumerate(confirmations):
        entry = pending.get(confirmation.tool_call_id)
        if entry is None:
            raise InvalidRequest(f"tool_confirmations[{i}]: no tool call {confirmation.tool_call_id!r} of this "
                                 "conversation waits for a confirmation", param="tool_confirmations")
        if confirmation.tool_call_id in answered:
            raise InvalidRequest(f"tool_confirmations[{i}]: tool call {confirmation.tool_call_id!r} is answered twice",
                                 param="tool_confirmations")
        answered.add(confirmation.tool_call_id)
        entry["confirmation_status"] = "allowed" if confirmation.confirmation == "allow" else "denied"
        turn.confirmed = entry
    for tool_call_id, entry in pending.items():
        if tool_call_id not in answered:
            raise InvalidRequest(f"this conversation waits for a confirmation of tool call {tool_call_id!r} "
                                 f"({entry['name']}): send tool_confirmations with allow or deny",
                                 param="tool_confirmations")


def _check_entry(i: int, entry: dict[str, Any]) -> None:
    needs = {"message.input": ("role", "content"), "message.output": ("content",),
             "function.call": ("tool_call_id", "name", "arguments"), "function.result": ("tool_call_id", "result")}
    for name in needs[entry["type"]]:
        if name not in entry:
            raise InvalidRequest(f"inputs[{i}]: a {entry['type']} entry needs {name}", param="inputs")
    if entry["type"] == "message.input" and entry["role"] not in ("user", "assistant"):
        raise InvalidRequest(f"inputs[{i}].role must be user or assistant", param="inputs")


def conversation_out(record: store.ConversationRecord) -> dict[str, Any]:
    s = record.settings
    common = {"object": "conversation", "id": record.id, "name": s.get("name"), "description": s.get("description"),
              "metadata": s.get("metadata"), "created_at": record.created_at.isoformat(timespec="microseconds"),
              "updated_at": record.updated_at.isoformat(timespec="microseconds")}
    if s.get("agent_id"):
        return {**common, "agent_id": s["agent_id"], "agent_version": s.get("agent_version")}
    return {**common, "model": s["model"], "instructions": s.get("instructions"), "tools": s.get("tools") or [],
            "completion_args": s.get("completion_args") or {}, "guardrails": s.get("guardrails")}
