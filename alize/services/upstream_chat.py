"""POST /v1/chat/completions answered by an upstream engine (vLLM, SGLang, llama-server,
another Alizé...) over OpenAI's wire, in Mistral's shapes: the same admission, limits and
metering as the local engine, the upstream's own usage figures billed, tool calls whole
with 9-character ids and checked arguments, answers checked against their schema.

Schemas and tools are checked here first (what Alizé would refuse locally it refuses up
front) and forwarded to the engine, which enforces them (vLLM, SGLang and llama-server do)."""

import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from alize.errors import InvalidRequest, UpstreamBroken
from alize.protocol.chat import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    ChunkChoice,
    DeltaMessage,
)
from alize.protocol.common import PromptTokensDetails, UsageInfo
from alize.registry import ModelEntry
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import SAFE_PROMPT
from alize.services.sampling import pick_seed
from alize.services.structured import plan_response, text_is_valid
from alize.services.tools import ID_ALPHABET, ToolPlan, plan_tools
from alize.upstream.router import affinity_key

PATH = "/chat/completions"
FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}
SAMPLING = ("temperature", "top_p", "stop", "presence_penalty", "frequency_penalty", "n", "logit_bias",
            "parallel_tool_calls", "min_tokens", "top_k", "repetition_penalty")


def mistral_call_id(upstream_id: str | None, index: int) -> str:
    """A 9-character [A-Za-z0-9] id for an upstream's tool-call id, the same each time, so
    that a conversation sent back with it reads the same to the upstream."""
    if upstream_id and len(upstream_id) == 9 and upstream_id.isalnum():
        return upstream_id
    digest = hashlib.sha256((upstream_id or f"call-{index}").encode()).digest()
    return "".join(ID_ALPHABET[b % len(ID_ALPHABET)] for b in digest[:9])


@dataclass
class Plan:
    entry: ModelEntry
    call: Call
    request: ChatCompletionRequest
    tools: ToolPlan | None
    check: Any
    prefix: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def max_tokens(self) -> int:
        asked = self.request.max_completion_tokens or self.request.max_tokens
        backend = self.entry.backend
        return asked or backend.default_max_tokens or backend.context_length

    def body(self, replica: str, stream: bool) -> dict[str, Any]:
        """The OpenAI-wire request for one replica (each may know the model by its own name)."""
        r = self.request
        backend = self.entry.replica(replica)
        mistral = backend.wire == "mistral"
        messages = [_message(m, keep_prefix=mistral) for m in r.messages]
        if r.safe_prompt and not mistral:
            messages.insert(0, {"role": "system", "content": SAFE_PROMPT})
        body: dict[str, Any] = {"model": backend.model, "messages": messages, "max_tokens": self.max_tokens}
        for name in SAMPLING:
            value = getattr(r, name)
            if value is not None:
                body[name] = value
        seed = pick_seed(r.random_seed, r.seed)
        if seed is not None:
            body["random_seed" if mistral else "seed"] = seed
        if mistral and r.safe_prompt:
            body["safe_prompt"] = True
        if r.response_format is not None and r.response_format.type != "text":
            body["response_format"] = r.response_format.model_dump(mode="json", exclude_none=True)
        if r.tools:
            body["tools"] = r.tools
            choice = r.tool_choice
            if choice is not None:
                body["tool_choice"] = choice if mistral or not isinstance(choice, str) else {
                    "any": "required"}.get(choice, choice)
        if self.prefix and not mistral:  # continue the assistant's message (vLLM, SGLang)
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        if stream:  # Mistral's wire puts usage on the last chunk without being asked
            body |= {"stream": True} | ({} if mistral else {"stream_options": {"include_usage": True}})
        return body


def _message(message: Any, keep_prefix: bool) -> dict[str, Any]:
    data: dict[str, Any] = message.model_dump(mode="json", exclude_none=True)
    if not keep_prefix:
        data.pop("prefix", None)
    for i, call in enumerate(data.get("tool_calls") or []):
        arguments = call.get("function", {}).get("arguments")
        if isinstance(arguments, dict):
            call["function"]["arguments"] = json.dumps(arguments, ensure_ascii=False)
        call.setdefault("type", "function")
        call.setdefault("id", mistral_call_id(None, i))
        call.pop("index", None)
    return data


def usage_from(figures: dict[str, Any] | None, fallback_prompt: int, completion: int) -> UsageInfo:
    """The upstream's usage figures; where it gave none, the counts made here."""
    figures = figures or {}
    prompt = int(figures.get("prompt_tokens") or fallback_prompt)
    done = int(figures.get("completion_tokens") or completion)
    cached = int((figures.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return UsageInfo(prompt_tokens=prompt, completion_tokens=done, total_tokens=prompt + done,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))


class UpstreamChat:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    def serves(self, model_id: str) -> bool:
        return self.hub.registry.get(model_id).is_upstream

    async def plan(self, request: ChatCompletionRequest, call: Call) -> Plan:
        """Checks what Alizé checks for any model, then books the worst case."""
        entry = self.hub.registry.get(request.model)
        response = plan_response(request.response_format)  # unsupported schema keywords: 400 now
        tools = plan_tools(request)
        if tools is not None and response.grammar is not None:
            raise InvalidRequest("tools and a JSON response_format cannot be combined", param="response_format")
        last = request.messages[-1]
        prefix = str(last.content or "") if isinstance(last, AssistantMessage) and last.prefix else ""
        plan = Plan(entry, call, request, tools, response.check, prefix)
        prompt = self.hub.counter(entry).chat([_message(m, keep_prefix=False) for m in request.messages], request.tools)
        await call.admit(entry, prompt, plan.max_tokens * (request.n or 1))
        return plan

    def _key(self, plan: Plan) -> bytes:
        start = json.dumps([m.model_dump(mode="json") for m in plan.request.messages[:2]])
        assert plan.call.key is not None
        return affinity_key(plan.call.key.workspace.id, start)

    async def complete(self, request: ChatCompletionRequest, call: Call) -> ChatCompletionResponse:
        plan = await self.plan(request, call)
        pool = self.hub.pool(plan.entry)
        replica, answer = await pool.complete(self._key(plan), PATH, lambda replica: plan.body(replica, stream=False),
                                              call.trace_headers())
        call.upstream(replica)
        call.upstream()
        choices, written = [], 0
        count = self.hub.counter(plan.entry)
        for i, choice in enumerate(answer.get("choices") or []):
            message = choice.get("message") or {}
            calls = self._calls(message.get("tool_calls"))
            reason = FINISH.get(choice.get("finish_reason") or "stop", "error")
            content = message.get("content") or ""
            written += count.text(content + (json.dumps(message["tool_calls"]) if message.get("tool_calls") else ""))
            reason = self._settle(plan, content, calls, reason)
            out = ChatMessageOut(content="", tool_calls=calls) if calls else ChatMessageOut(
                content=plan.prefix + content if plan.prefix and not content.startswith(plan.prefix) else content)
            choices.append(ChatChoice(index=choice.get("index", i), message=out, finish_reason=reason))
        figures = usage_from(answer.get("usage"), call.prompt_tokens, written)
        call.settle_usage(figures.prompt_tokens, figures.completion_tokens, figures.prompt_tokens_details.cached_tokens)
        await call.succeed()
        return ChatCompletionResponse(id=call.id, created=plan.created, model=request.model, choices=choices,
                                      usage=figures)

    def _calls(self, upstream: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if not upstream:
            return None
        return [{"id": mistral_call_id(c.get("id"), i), "type": "function", "index": i,
                 "function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments") or "{}"}}
                for i, c in enumerate(upstream)]

    @staticmethod
    def _settle(plan: Plan, content: str, calls: list[dict[str, Any]] | None, reason: str) -> str:
        """finish_reason "error" for an answer that breaks its contract: calls to functions not
        offered or with arguments off their schema, text off its schema."""
        if calls:
            if plan.tools is None:
                return "error"
            try:
                return "tool_calls" if plan.tools.arguments_valid(calls) else "error"
            except (KeyError, ValueError):
                return "error"
        if plan.check is not None and reason == "stop" and not text_is_valid(content, plan.check):
            return "error"
        return reason

    async def stream(self, plan: Plan, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
        call, n = plan.call, plan.request.n or 1

        def chunk(choices: list[ChunkChoice], usage_info: UsageInfo | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=call.id, created=plan.created, model=plan.request.model, choices=choices,
                                       usage=usage_info)

        pool = self.hub.pool(plan.entry)
        upstream = await pool.stream(self._key(plan), PATH, lambda replica: plan.body(replica, stream=True),
                                     call.trace_headers())
        call.upstream(upstream.replica)
        state = [_Choice() for _ in range(n)]
        figures: dict[str, Any] | None = None
        call.delivering = True
        try:
            for i in range(n):
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            try:
                async for event in upstream:
                    figures = event.get("usage") or figures
                    for choice in event.get("choices") or []:
                        out = state[choice.get("index", 0)].feed(choice, call)
                        if out is not None:
                            yield chunk([out])
            except UpstreamBroken:  # the answer broke off: what was delivered is billed
                for s in state:
                    s.reason = s.reason or "error"
                figures = None
            call.upstream()
            count = self.hub.counter(plan.entry)
            delivered = sum(count.text(s.written()) if count.exact else s.tokens for s in state)
            final = usage_from(figures, call.prompt_tokens, delivered)
            call.settle_usage(final.prompt_tokens, final.completion_tokens, final.prompt_tokens_details.cached_tokens)
            await call.succeed()  # recorded before the client sees the last chunk
            ends = [s.end(i, plan) for i, s in enumerate(state)]
            for i, end in enumerate(ends):  # usage on exactly one chunk: the last, or its own
                last = i == len(ends) - 1
                yield chunk([end], final if last and not include_usage else None)
            if include_usage:
                yield chunk([], final)
        finally:
            await upstream.aclose()  # a client gone: the upstream stops generating


@dataclass
class _Choice:
    """One streamed choice: text goes out as it comes; tool calls are gathered and sent
    whole (Mistral's SDKs read a call in one delta) when the choice ends."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    reason: str | None = None
    tokens: int = 0  # content deltas seen: the bill if the upstream sends no usage

    def feed(self, choice: dict[str, Any], call: Call) -> ChunkChoice | None:
        delta = choice.get("delta") or {}
        index = choice.get("index", 0)
        out = None
        if delta.get("content"):
            self.text.append(delta["content"])
            self.tokens += 1
            call.progress(str(index), self.tokens)
            out = ChunkChoice(index=index, delta=DeltaMessage(content=delta["content"]))
        for part in delta.get("tool_calls") or []:
            slot = self.calls.setdefault(part.get("index", 0), {"id": None, "name": "", "arguments": ""})
            slot["id"] = slot["id"] or part.get("id")
            function = part.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
            self.tokens += 1
        if choice.get("finish_reason"):
            self.reason = FINISH.get(choice["finish_reason"], "error")
        return out

    def written(self) -> str:
        """What the choice wrote: its text, or its calls."""
        return "".join(self.text) + "".join(c["name"] + c["arguments"] for c in self.calls.values())

    def end(self, index: int, plan: Plan) -> ChunkChoice:
        if self.reason == "error":  # broke off: no half-made calls
            return ChunkChoice(index=index, delta=DeltaMessage(content=""), finish_reason="error")
        calls = [{"id": mistral_call_id(c["id"], i), "type": "function", "index": i,
                  "function": {"name": c["name"], "arguments": c["arguments"] or "{}"}}
                 for i, c in sorted(self.calls.items())] or None
        reason = UpstreamChat._settle(plan, "".join(self.text), calls, self.reason or "stop")
        return ChunkChoice(index=index, delta=DeltaMessage(content="", tool_calls=calls), finish_reason=reason)
