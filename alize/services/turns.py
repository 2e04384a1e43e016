"""A conversation's turn, run: the document_library search (if the agent has one), the
model through the chat service (which meters it), and the entries that come of it, whole or
as the spec's events. When the model hands off to another agent (services/handoffs.py), the
next agent answers in the same turn, each model call metered as a request of its own."""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from alize.errors import AlizeError
from alize.protocol.chat import ChatCompletionRequest, ChatCompletionResponse
from alize.protocol.common import UsageInfo
from alize.services.agents import chat_body
from alize.services.backend import Generation
from alize.services.chat import ChatService
from alize.services.handoffs import MAX_HANDOFFS, Handoff, handoff_entry
from alize.services.metering import Call
from alize.services.retrieval import (
    TOOL,
    Retrieval,
    Retriever,
    grounded,
    last_user_text,
    library_ids,
    needs_confirmation,
)
from alize.store.agents import AgentRecord

ENDPOINT = "conversations"


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_id(prefix: str) -> str:
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
    execution: str = "server"  # who runs handoffs
    agent: AgentRecord | None = None  # the agent answering now (another after a handoff)
    handoffs: dict[str, Handoff] = field(default_factory=dict)  # its handoff tools
    confirmed: dict[str, Any] | None = None  # the search that waited for the client, answered by this request
    retrieval: Retrieval | None = None  # what its document_library tool found for this turn
    found: dict[str, Any] | None = None  # that search as the entry before the answer
    outputs: list[dict[str, Any]] = field(default_factory=list)  # the entries made so far

    @property
    def agent_id(self) -> str | None:
        if self.agent is not None:
            return self.agent.id
        agent_id: str | None = self.settings.get("agent_id")
        return agent_id


class TurnRunner:
    def __init__(self, chat: ChatService, retriever: Retriever,
                 activate: Callable[[Turn, AgentRecord], None], save: Callable[[Turn], None]):
        self.chat = chat
        self.retriever = retriever
        self.activate = activate  # makes an agent the turn's (its config and handoffs), reading the store
        self.save = save  # stores the turn's inputs and outputs

    async def begin(self, turn: Turn, call: Call, stream: bool) -> Generation | None:
        """The turn's first model call, admitted (a refusal is still an HTTP error); none
        when the search waits for the client's confirmation (the turn pauses)."""
        if not await self._retrieve(turn, call, turn.confirmed):
            return None
        return await self.chat.generation(self._request(turn, stream), call, stream=stream)

    async def _retrieve(self, turn: Turn, call: Call, answered: dict[str, Any] | None = None) -> bool:
        """The document_library search for the user's latest message, if the agent has one;
        False, with a pending function.call entry among the outputs, where the tool wants the
        client's confirmation first. `answered`: that call, now allowed or denied."""
        tools = turn.config.get("tools")
        libraries = library_ids(tools)
        query = last_user_text(messages_of([*turn.history, *turn.inputs])) if libraries else None
        if answered is not None:
            query = json.loads(answered["arguments"])["query"] if answered["confirmation_status"] == "allowed" else None
        elif query and needs_confirmation(tools):
            turn.retrieval = turn.found = None
            turn.outputs.append(search_call_entry(turn, query))
            return False
        turn.retrieval = await self.retriever.search(call, libraries, query) if query and libraries else None
        turn.found = tool_entry(turn, now_text()) if turn.retrieval is not None else None
        return True

    def _request(self, turn: Turn, stream: bool) -> ChatCompletionRequest:
        messages = messages_of([*turn.history, *turn.inputs])
        if turn.retrieval is not None:
            messages = grounded(messages, turn.retrieval)
        config = turn.config
        if turn.handoffs:
            config = {**config, "tools": [*(config.get("tools") or []), *(h.function() for h in turn.handoffs.values())]}
        return ChatCompletionRequest.model_validate({**chat_body(config, messages, turn.overrides), "stream": stream})

    def _handoff(self, turn: Turn, calls: list[dict[str, Any]] | None) -> Handoff | None:
        """The handoff the model called, if the server runs it and the turn may hand off again."""
        if turn.execution != "server" or len([o for o in turn.outputs if o["type"] == "agent.handoff"]) >= MAX_HANDOFFS:
            return None
        return next((turn.handoffs[c["function"]["name"]] for c in calls or [] if c["function"]["name"] in
                     turn.handoffs), None)

    async def _hand_over(self, turn: Turn, handoff: Handoff, call: Call, stream: bool,
                         started: str) -> Generation | None:
        """Records the handoff, makes the next agent the turn's, and starts its model call
        (none if its search waits for the client's confirmation)."""
        previous = turn.agent
        assert previous is not None
        turn.outputs += [*_found(turn), handoff_entry(new_id("handoff"), previous, handoff, now_text())]
        await asyncio.to_thread(self.activate, turn, handoff.agent)
        assert call.meter is not None and call.key is not None
        follow = call.meter.open(ENDPOINT, call.key, call.cache_scope, call.request_id)
        try:
            if not await self._retrieve(turn, follow):
                await follow.abandon()  # no model call: nothing to record
                return None
            return await self.chat.generation(self._request(turn, stream), follow, stream=stream)
        except AlizeError as exc:  # refused (its guardrails, its limits): recorded as such
            await follow.finish(exc.status_code)
            raise
        except BaseException:
            await follow.finish(500)
            raise

    async def respond(self, turn: Turn, gen: Generation | None, call: Call) -> dict[str, Any]:
        started, usage = now_text(), _Usage()
        while gen is not None:
            answer = await self.chat.respond(gen)
            usage.add(answer.usage)
            message = answer.choices[0].message
            handoff = self._handoff(turn, message.tool_calls)
            if handoff is None:
                turn.outputs += [*_found(turn), *_answer(turn, answer, started)]
                break
            gen = await self._hand_over(turn, handoff, call, False, started)
        await asyncio.to_thread(self.save, turn)
        return {"object": "conversation.response", "conversation_id": turn.conversation_id, "outputs": turn.outputs,
                "usage": usage.out()}

    async def stream(self, turn: Turn, gen: Generation | None,
                     call: Call) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The run as the spec's events: conversation.response.started; tool.execution.*
        for a search; message.output.delta or function.call.delta (a search that waits for
        the client's confirmation is one, pending); agent.handoff.* for a handoff, then the
        next agent's; conversation.response.done (with the usage)."""
        started, usage = now_text(), _Usage()
        yield "conversation.response.started", {"type": "conversation.response.started",
                                                "conversation_id": turn.conversation_id, "created_at": started}
        while True:
            for name, event in _search_events(turn):
                yield name, event
            if gen is None:  # the search waits for the client's confirmation
                yield "function.call.delta", _call_event(turn.outputs[-1], len(turn.outputs) - 1)
                break
            index = len(turn.outputs) + (turn.retrieval is not None)  # the output index of what the model says
            message_id, text, calls, handoff = new_id("msg"), "", [], None
            async for chunk in self.chat.stream(gen, include_usage=True):
                usage.add(chunk.usage)
                for choice in chunk.choices:
                    for tool_call in choice.delta.tool_calls or []:
                        handoff = handoff or self._handoff(turn, [tool_call])
                        if handoff is None:
                            entry = call_entry(turn, tool_call)  # kept: the stored entry is the one announced
                            calls.append(entry)
                            yield "function.call.delta", _call_event(entry, index + len(calls) - 1)
                    if choice.delta.content:
                        text += choice.delta.content
                        yield "message.output.delta", _delta(turn, message_id, started, index, 0, choice.delta.content)
            if handoff is not None:
                gen = await self._hand_over(turn, handoff, call, True, started)
                at = max(i for i, o in enumerate(turn.outputs) if o["type"] == "agent.handoff")
                entry = turn.outputs[at]
                common = {"id": entry["id"], "created_at": entry["created_at"], "output_index": at}
                yield "agent.handoff.started", {"type": "agent.handoff.started", **common, **{
                    k: entry[k] for k in ("previous_agent_id", "previous_agent_name")}}
                yield "agent.handoff.done", {"type": "agent.handoff.done", **common, **{
                    k: entry[k] for k in ("next_agent_id", "next_agent_name")}}
                continue
            message = message_entry(turn, text, started, now_text(), message_id)
            if not calls:
                references = message["content"][1:] if isinstance(message["content"], list) else []
                for i, reference in enumerate(references, 1):
                    yield "message.output.delta", _delta(turn, message_id, started, index, i, reference)
            turn.outputs += [*_found(turn), *(calls or [message])]
            break
        await asyncio.to_thread(self.save, turn)
        yield "conversation.response.done", {"type": "conversation.response.done", "usage": usage.out(),
                                             "created_at": now_text()}

class _Usage:
    """The usage of every model call of a turn, added up (ConversationUsageInfo)."""

    def __init__(self) -> None:
        self.prompt = self.completion = 0
        self.seen = False

    def add(self, usage: UsageInfo | None) -> None:
        if usage is not None:
            self.seen = True
            self.prompt += usage.prompt_tokens
            self.completion += usage.completion_tokens

    def out(self) -> dict[str, int]:
        if not self.seen:
            return {}
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                "total_tokens": self.prompt + self.completion}


def _found(turn: Turn) -> list[dict[str, Any]]:
    return [turn.found] if turn.found is not None else []


def _call_event(entry: dict[str, Any], output_index: int) -> dict[str, Any]:
    """A function call as its function.call.delta event (whole: arguments and all)."""
    return {**{k: entry[k] for k in ("id", "name", "tool_call_id", "arguments", "agent_id", "model", "created_at")},
            **({"confirmation_status": entry["confirmation_status"]} if "confirmation_status" in entry else {}),
            "type": "function.call.delta", "output_index": output_index}


def _search_events(turn: Turn) -> list[tuple[str, dict[str, Any]]]:
    """A search as the events that announce it."""
    if turn.found is None:
        return []
    tool = turn.found
    common = {"id": tool["id"], "name": tool["name"], "created_at": tool["created_at"],
              "output_index": len(turn.outputs)}
    return [("tool.execution.started", {"type": "tool.execution.started", **common, "arguments": tool["arguments"],
                                        "model": turn.config["model"], "agent_id": turn.agent_id}),
            ("tool.execution.done", {"type": "tool.execution.done", **common, "info": tool["info"]})]


def _delta(turn: Turn, message_id: str, started: str, output_index: int, content_index: int,
           content: str | dict[str, Any]) -> dict[str, Any]:
    return {"type": "message.output.delta", "output_index": output_index, "id": message_id, "content": content,
            "role": "assistant", "model": turn.config["model"], "agent_id": turn.agent_id, "created_at": started,
            "content_index": content_index}


def _answer(turn: Turn, answer: ChatCompletionResponse, started: str) -> list[dict[str, Any]]:
    message = answer.choices[0].message
    if message.tool_calls:
        return [call_entry(turn, call) for call in message.tool_calls]
    return [message_entry(turn, message.content or "", started, now_text(), new_id("msg"))]


def messages_of(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages of a conversation's entries: consecutive function calls make one
    assistant message with tool calls, each result a tool message. What a server-side tool
    found, the calls it made to ask the client first, and handoffs, were for their turn only."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        kind = entry["type"]
        if kind == "function.call" and "confirmation_status" not in entry:
            call = {"id": entry["tool_call_id"], "type": "function",
                    "function": {"name": entry["name"], "arguments": entry["arguments"]}}
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function.result":
            out.append({"role": "tool", "tool_call_id": entry["tool_call_id"], "content": entry["result"]})
        elif kind in ("message.input", "message.output"):
            content = entry["content"]
            if kind == "message.output" and isinstance(content, list):  # the answer's text, not its references
                content = "".join(c.get("text", "") for c in content if c.get("type") == "text")
            out.append({"role": entry.get("role", "assistant"), "content": content,
                        **({"prefix": True} if entry.get("prefix") else {})})
    return out


def call_entry(turn: Turn, call: dict[str, Any]) -> dict[str, Any]:
    now = now_text()
    return {"object": "entry", "type": "function.call", "id": new_id("fc"), "tool_call_id": call["id"],
            "name": call["function"]["name"], "arguments": call["function"]["arguments"],
            "agent_id": turn.agent_id, "model": turn.config["model"], "created_at": now, "completed_at": now}


def search_call_entry(turn: Turn, query: str) -> dict[str, Any]:
    """The document_library search as a function call waiting for the client's confirmation
    (tool_configuration.requires_confirmation): the next append's tool_confirmations answer it."""
    call = {"id": new_id("call"), "function": {"name": TOOL, "arguments": json.dumps({"query": query})}}
    return {**call_entry(turn, call), "confirmation_status": "pending"}


def tool_entry(turn: Turn, started: str) -> dict[str, Any]:
    """The document_library tool's run, as the entry before the answer."""
    assert turn.retrieval is not None
    return {"object": "entry", "type": "tool.execution", "id": new_id("tool"), "name": TOOL,
            "arguments": turn.retrieval.arguments, "info": turn.retrieval.info(), "agent_id": turn.agent_id,
            "model": turn.config["model"], "created_at": started, "completed_at": started}


def message_entry(turn: Turn, text: str, created: str, completed: str, entry_id: str) -> dict[str, Any]:
    """The model's answer: its text, or (after a document search that found something) its
    text as a chunk followed by a tool_reference chunk for each document drawn on."""
    references = turn.retrieval.references() if turn.retrieval is not None else []
    content: str | list[dict[str, Any]] = [{"type": "text", "text": text}, *references] if references else text
    return {"object": "entry", "type": "message.output", "id": entry_id, "role": "assistant", "content": content,
            "agent_id": turn.agent_id, "model": turn.config["model"], "created_at": created,
            "completed_at": completed}
