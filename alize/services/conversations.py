"""Conversations as a use case: entries kept in order per workspace; each start, append or
restart runs the model once on the conversation so far (an agent's version, or a model with
its instructions, tools and completion arguments) through the chat service, which meters
it. A function call comes back as `function.call` entries for the client to run; its
`function.result` entries continue the conversation (the SDK's RunContext does both)."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from alize.errors import InvalidRequest, NotFound
from alize.protocol.chat import ChatCompletionRequest, ChatCompletionResponse
from alize.protocol.common import UsageInfo
from alize.protocol.conversations import (
    AppendConversationRequest,
    ConversationRequest,
    Inputs,
    RestartConversationRequest,
)
from alize.services.agents import AgentService, chat_body, check_guardrails
from alize.services.backend import Generation
from alize.services.chat import ChatService
from alize.services.metering import Call
from alize.services.retrieval import TOOL, Retrieval, Retriever, grounded, last_user_text, library_ids
from alize.store import conversations as store
from alize.store.accounts import KeyInfo
from alize.store.conversations import Missing
from alize.store.db import Database

ENTRY_TYPES = ("message.input", "message.output", "function.call", "function.result")
SETTINGS = ("agent_id", "agent_version", "model", "instructions", "tools", "completion_args", "name",
            "description", "metadata")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class Turn:
    """One run of a conversation: what it runs with, the entries before, the new inputs."""

    workspace_id: str
    conversation_id: str
    settings: dict[str, Any]
    config: dict[str, Any]  # model, instructions, tools, completion_args (the agent's, or the conversation's)
    history: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    store: bool
    is_new: bool
    overrides: dict[str, Any] = field(default_factory=dict)  # this turn's completion_args
    retrieval: Retrieval | None = None  # what the document_library tool found for this turn

    @property
    def agent_id(self) -> str | None:
        agent_id: str | None = self.settings.get("agent_id")
        return agent_id


class ConversationService:
    def __init__(self, db: Database, agents: AgentService, chat: ChatService, retriever: Retriever):
        self.db = db
        self.agents = agents
        self.chat = chat
        self.retriever = retriever

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
        check_guardrails(request.guardrails)
        if request.model:
            self.agents.check_model(key, request.model)
            self.agents.check_tools(key, request.tools or [])
        config = self._config(key.workspace.id, settings)
        return Turn(key.workspace.id, _id("conv"), settings, config, [], self._inputs(request.inputs),
                    request.store is not False, True, args)

    def append(self, key: KeyInfo, conversation_id: str, request: AppendConversationRequest) -> Turn:
        record = self._record(key.workspace.id, conversation_id)
        history = self._entries(key.workspace.id, conversation_id)
        return Turn(key.workspace.id, conversation_id, record.settings, self._config(key.workspace.id, record.settings),
                    history, self._inputs(request.inputs), request.store is not False, False, _args(request))

    def restart(self, key: KeyInfo, conversation_id: str, request: RestartConversationRequest) -> Turn:
        check_guardrails(request.guardrails)
        settings = dict(self._record(key.workspace.id, conversation_id).settings)
        if request.agent_version is not None:
            settings["agent_version"] = request.agent_version
        if request.metadata is not None:
            settings["metadata"] = request.metadata
        history = [{**e, "id": _id(e["id"].split("_", 1)[0])}  # a new conversation: its entries' own ids
                   for e in self._entries(key.workspace.id, conversation_id, through=request.from_entry_id)]
        return Turn(key.workspace.id, _id("conv"), settings, self._config(key.workspace.id, settings), history,
                    self._inputs(request.inputs), request.store is not False, True, _args(request))

    def _config(self, workspace_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Model, instructions, tools and completion_args: the agent's version's, with the
        conversation's own completion_args over them; or the conversation's."""
        if settings.get("agent_id"):
            config = self.agents.record(workspace_id, settings["agent_id"], settings.get("agent_version")).config
            args = {**(config.get("completion_args") or {}), **(settings.get("completion_args") or {})}
            return {**config, "completion_args": args}
        return {k: settings.get(k) for k in ("model", "instructions", "tools", "completion_args")}

    @staticmethod
    def _inputs(inputs: Inputs) -> list[dict[str, Any]]:
        """The new entries, each with its id and time: a string is one user message."""
        if isinstance(inputs, str):
            inputs = [{"role": "user", "content": inputs}] if inputs else []
        now, out = _now(), []
        for i, given in enumerate(inputs):
            kind = given.get("type") or ("function.result" if "tool_call_id" in given else "message.input")
            if kind not in ENTRY_TYPES:
                raise InvalidRequest(f"inputs[{i}]: entries of type {kind!r} are not taken here (only "
                                     f"{', '.join(ENTRY_TYPES)})", param="inputs")
            entry = {k: v for k, v in given.items() if v is not None}
            prefix = {"function.result": "fr", "function.call": "fc"}.get(kind, "msg")
            # ids are the server's own (entries are found by them), whatever the client sent
            entry.update(object="entry", type=kind, id=_id(prefix), created_at=now, completed_at=now)
            if kind == "message.output":
                entry["role"] = "assistant"
            _check_entry(i, entry)
            out.append(entry)
        if not out:
            raise InvalidRequest("inputs must hold at least one entry", param="inputs")
        return out

    # -- running ----------------------------------------------------------------
    async def retrieve(self, turn: Turn, call: Call) -> None:
        """Runs the document_library tool of the turn's agent (or conversation) on the
        user's new message, if there is one."""
        libraries = library_ids(turn.config.get("tools"))
        query = last_user_text(_messages([*turn.history, *turn.inputs])) if libraries else None
        if query:
            turn.retrieval = await self.retriever.search(call, libraries, query)

    def chat_request(self, turn: Turn, stream: bool) -> ChatCompletionRequest:
        messages = _messages([*turn.history, *turn.inputs])
        if turn.retrieval is not None:
            messages = grounded(messages, turn.retrieval)
        return ChatCompletionRequest.model_validate(
            {**chat_body(turn.config, messages, turn.overrides), "stream": stream})

    async def respond(self, turn: Turn, gen: Generation) -> dict[str, Any]:
        started = _now()
        answer = await self.chat.respond(gen)
        outputs = self._outputs(turn, answer, started)
        await asyncio.to_thread(self._save, turn, outputs)
        return {"object": "conversation.response", "conversation_id": turn.conversation_id, "outputs": outputs,
                "usage": _usage(answer.usage)}

    async def stream(self, turn: Turn, gen: Generation) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The run as the spec's events: conversation.response.started, message.output.delta
        or function.call.delta, conversation.response.done (with the usage)."""
        started = _now()
        yield "conversation.response.started", {"type": "conversation.response.started",
                                                "conversation_id": turn.conversation_id, "created_at": started}
        message_id, text, calls, usage = _id("msg"), "", [], None
        tool = _tool_entry(turn, started) if turn.retrieval is not None else None
        if tool is not None:
            common = {k: tool[k] for k in ("id", "name", "created_at")} | {"output_index": 0}
            yield "tool.execution.started", {"type": "tool.execution.started", **common, "arguments": tool["arguments"],
                                             "model": turn.config["model"], "agent_id": turn.agent_id}
            yield "tool.execution.done", {"type": "tool.execution.done", **common, "info": tool["info"]}
        first = 0 if tool is None else 1  # the output index of what the model says
        async for chunk in self.chat.stream(gen, include_usage=True):
            usage = chunk.usage or usage
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    entry = _call_entry(turn, call)  # kept: the stored entry is the one announced
                    calls.append(entry)
                    yield "function.call.delta", {**{k: entry[k] for k in (
                        "id", "name", "tool_call_id", "arguments", "agent_id", "model", "created_at")},
                        "type": "function.call.delta", "output_index": first + len(calls) - 1}
                if choice.delta.content:
                    text += choice.delta.content
                    yield "message.output.delta", self._delta(turn, message_id, started, first, 0,
                                                              choice.delta.content)
        now = _now()
        message = _message_entry(turn, text, started, now, message_id)
        if not calls:
            for i, reference in enumerate(message["content"][1:] if isinstance(message["content"], list) else [], 1):
                yield "message.output.delta", self._delta(turn, message_id, started, first, i, reference)
        outputs = [*([tool] if tool else []), *(calls or [message])]
        await asyncio.to_thread(self._save, turn, outputs)
        yield "conversation.response.done", {"type": "conversation.response.done", "usage": _usage(usage),
                                             "created_at": now}

    @staticmethod
    def _delta(turn: Turn, message_id: str, started: str, output_index: int, content_index: int,
               content: str | dict[str, Any]) -> dict[str, Any]:
        return {"type": "message.output.delta", "output_index": output_index, "id": message_id, "content": content,
                "role": "assistant", "model": turn.config["model"], "agent_id": turn.agent_id, "created_at": started,
                "content_index": content_index}

    def _outputs(self, turn: Turn, answer: ChatCompletionResponse, started: str) -> list[dict[str, Any]]:
        message = answer.choices[0].message
        tool = [_tool_entry(turn, started)] if turn.retrieval is not None else []
        if message.tool_calls:
            return [*tool, *(_call_entry(turn, call) for call in message.tool_calls)]
        return [*tool, _message_entry(turn, message.content or "", started, _now(), _id("msg"))]

    def _save(self, turn: Turn, outputs: list[dict[str, Any]]) -> None:
        if not turn.store:
            return
        now = datetime.now(UTC)
        if turn.is_new:
            store.create(self.db, turn.workspace_id, turn.conversation_id, turn.settings,
                         [*turn.history, *turn.inputs, *outputs], now)
        else:
            store.append(self.db, turn.workspace_id, turn.conversation_id, [*turn.inputs, *outputs], now)

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


def _check_entry(i: int, entry: dict[str, Any]) -> None:
    needs = {"message.input": ("role", "content"), "message.output": ("content",),
             "function.call": ("tool_call_id", "name", "arguments"), "function.result": ("tool_call_id", "result")}
    for name in needs[entry["type"]]:
        if name not in entry:
            raise InvalidRequest(f"inputs[{i}]: a {entry['type']} entry needs {name}", param="inputs")
    if entry["type"] == "message.input" and entry["role"] not in ("user", "assistant"):
        raise InvalidRequest(f"inputs[{i}].role must be user or assistant", param="inputs")


def _messages(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages of a conversation's entries: consecutive function calls make one
    assistant message with tool calls, each result a tool message."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        kind = entry["type"]
        if kind == "function.call":
            arguments = entry["arguments"]
            call = {"id": entry["tool_call_id"], "type": "function",
                    "function": {"name": entry["name"], "arguments": arguments}}
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function.result":
            out.append({"role": "tool", "tool_call_id": entry["tool_call_id"], "content": entry["result"]})
        elif kind != "tool.execution":  # what a server-side tool found was for that turn only
            content = entry["content"]
            if kind == "message.output" and isinstance(content, list):  # the answer's text, not its references
                content = "".join(c.get("text", "") for c in content if c.get("type") == "text")
            out.append({"role": entry.get("role", "assistant"), "content": content,
                        **({"prefix": True} if entry.get("prefix") else {})})
    return out


def _usage(usage: UsageInfo | None) -> dict[str, int]:
    """A chat usage as the conversation's (ConversationUsageInfo)."""
    if usage is None:
        return {}
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _call_entry(turn: Turn, call: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    return {"object": "entry", "type": "function.call", "id": _id("fc"), "tool_call_id": call["id"],
            "name": call["function"]["name"], "arguments": call["function"]["arguments"],
            "agent_id": turn.agent_id, "model": turn.config["model"], "created_at": now, "completed_at": now}


def _tool_entry(turn: Turn, started: str) -> dict[str, Any]:
    """The document_library tool's run, as the entry before the answer."""
    assert turn.retrieval is not None
    return {"object": "entry", "type": "tool.execution", "id": _id("tool"), "name": TOOL,
            "arguments": turn.retrieval.arguments, "info": turn.retrieval.info(), "agent_id": turn.agent_id,
            "model": turn.config["model"], "created_at": started, "completed_at": started}


def _message_entry(turn: Turn, text: str, created: str, completed: str, entry_id: str) -> dict[str, Any]:
    """The model's answer: its text, or (after a document search that found something) its
    text as a chunk followed by a tool_reference chunk for each document drawn on."""
    references = turn.retrieval.references() if turn.retrieval is not None else []
    content: str | list[dict[str, Any]] = [{"type": "text", "text": text}, *references] if references else text
    return {"object": "entry", "type": "message.output", "id": entry_id, "role": "assistant", "content": content,
            "agent_id": turn.agent_id, "model": turn.config["model"], "created_at": created,
            "completed_at": completed}


def conversation_out(record: store.ConversationRecord) -> dict[str, Any]:
    s = record.settings
    common = {"object": "conversation", "id": record.id, "name": s.get("name"), "description": s.get("description"),
              "metadata": s.get("metadata"), "created_at": record.created_at.isoformat(timespec="microseconds"),
              "updated_at": record.updated_at.isoformat(timespec="microseconds")}
    if s.get("agent_id"):
        return {**common, "agent_id": s["agent_id"], "agent_version": s.get("agent_version")}
    return {**common, "model": s["model"], "instructions": s.get("instructions"), "tools": s.get("tools") or [],
            "completion_args": s.get("completion_args") or {}}
