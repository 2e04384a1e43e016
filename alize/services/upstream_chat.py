"""Chat on an upstream engine (vLLM, SGLang, llama-server, another Alizé...) as a backend:
the request sent over OpenAI's wire (or Mistral's), its answer read back as the pieces the
chat use case turns into Mistral's shapes, as it does the local engine's. The same
admission, limits and metering; the upstream's own usage figures billed; tool-call ids
made Mistral's 9 characters.

Schemas and tools are checked here first (what Alizé would refuse locally it refuses up
front) and forwarded to the engine, which enforces them (vLLM, SGLang and llama-server do)."""

import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from alize.errors import InvalidRequest, UpstreamBroken
from alize.protocol.chat import AssistantMessage, ChatCompletionRequest
from alize.protocol.common import CompletionTokensDetails, UsageInfo
from alize.registry import ModelEntry
from alize.services.backend import Generation, Piece, usage_info
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import SAFE_PROMPT
from alize.services.sampling import pick_seed
from alize.services.structured import plan_response
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
        if r.prediction is not None:  # engines that take predicted outputs use them; others ignore them
            body["prediction"] = r.prediction.model_dump(mode="json")
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
    usage = usage_info(prompt, done, cached)
    details = figures.get("completion_tokens_details") or {}
    usage.completion_tokens_details = CompletionTokensDetails(
        accepted_prediction_tokens=int(details.get("accepted_prediction_tokens") or 0),
        rejected_prediction_tokens=int(details.get("rejected_prediction_tokens") or 0))
    return usage


class UpstreamChat:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    async def generation(self, request: ChatCompletionRequest, call: Call, stream: bool) -> "UpstreamGeneration":
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
        return UpstreamGeneration(self.hub, plan, stream)


class UpstreamGeneration(Generation):
    """A chat request on an upstream's replicas: sent whole or streamed, its choices read
    back as pieces; text as it comes, tool calls gathered and given whole with their end."""

    def __init__(self, hub: ModelHub, plan: Plan, stream: bool):
        super().__init__(call=plan.call, model_id=plan.request.model, n=plan.request.n or 1, prefix=plan.prefix,
                         tools=plan.tools, calls_in_text=False, check=plan.check, created=plan.created)
        self.hub, self.plan, self.stream = hub, plan, stream
        self.final: UsageInfo | None = None

    def _key(self) -> bytes:
        start = json.dumps([m.model_dump(mode="json") for m in self.plan.request.messages[:2]])
        assert self.call.key is not None
        return affinity_key(self.call.key.workspace.id, start)

    async def start(self) -> AsyncIterator[Piece]:
        pool = self.hub.pool(self.plan.entry)
        if not self.stream:
            replica, answer = await pool.complete(self._key(), PATH, lambda r: self.plan.body(r, stream=False),
                                                  self.call.trace_headers())
            self.call.upstream(replica)
            self.call.upstream()
            return self._whole(answer)
        upstream = await pool.stream(self._key(), PATH, lambda r: self.plan.body(r, stream=True),
                                     self.call.trace_headers())
        self.call.upstream(upstream.replica)
        self.call.delivering = True  # an answer has begun: what it delivers is billed, even if cut
        return self._streamed(upstream)

    async def _whole(self, answer: dict[str, Any]) -> AsyncIterator[Piece]:
        count, written = self.hub.counter(self.plan.entry), 0
        for i, choice in enumerate(answer.get("choices") or []):
            message = choice.get("message") or {}
            content = _Unecho(self.prefix).feed(message.get("content") or "", end=True)
            written += count.text(content + (json.dumps(message["tool_calls"]) if message.get("tool_calls") else ""))
            yield Piece(choice.get("index", i), content, FINISH.get(choice.get("finish_reason") or "stop", "error"),
                        calls=whole_calls(message.get("tool_calls")))
        self._settle(usage_from(answer.get("usage"), self.call.prompt_tokens, written))

    async def _streamed(self, upstream: Any) -> AsyncIterator[Piece]:
        state: dict[int, _Choice] = {i: _Choice(prefix=self.prefix) for i in range(self.n)}
        figures: dict[str, Any] | None = None
        try:
            try:
                async for event in upstream:
                    figures = event.get("usage") or figures
                    for choice in event.get("choices") or []:
                        index = choice.get("index", 0)
                        choice_state = state.get(index) or state.setdefault(index, _Choice(prefix=self.prefix))
                        piece = choice_state.feed(index, choice, self.call)
                        if piece is not None:
                            yield piece
            except UpstreamBroken:  # the answer broke off: what was delivered is billed
                figures = None
                for index, s in state.items():
                    if s.reason is None:
                        s.reason = "error"
                        yield Piece(index, "", "error")
            for index, s in state.items():  # ended without a reason: as if stopped
                if s.reason is None:
                    s.reason = "stop"
                    yield Piece(index, s.unecho.feed("", end=True), "stop", calls=s.whole_calls())
            self.call.upstream()
            count = self.hub.counter(self.plan.entry)
            delivered = sum(count.text(s.written()) if count.exact else s.tokens for s in state.values())
            self._settle(usage_from(figures, self.call.prompt_tokens, delivered))
        finally:
            await upstream.aclose()  # a client gone: the upstream stops generating

    def _settle(self, figures: UsageInfo) -> None:
        self.final = figures
        self.call.settle_usage(figures.prompt_tokens, figures.completion_tokens,
                               figures.prompt_tokens_details.cached_tokens)

    def usage(self) -> UsageInfo:
        assert self.final is not None, "usage is known once the pieces have all come"
        return self.final


def whole_calls(upstream: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """An upstream's tool calls in Mistral's shape, with 9-character ids."""
    if not upstream:
        return None
    return [{"id": mistral_call_id(c.get("id"), i), "type": "function", "index": i,
             "function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments") or "{}"}}
            for i, c in enumerate(upstream)]


@dataclass
class _Choice:
    """One streamed choice: text goes out as it comes; tool calls are gathered and given whole
    (Mistral's SDKs read a call in one delta) when the choice ends."""

    prefix: str = ""
    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    reason: str | None = None
    tokens: int = 0  # content deltas seen: the bill if the upstream sends no usage
    unecho: "_Unecho" = field(init=False)

    def __post_init__(self) -> None:
        self.unecho = _Unecho(self.prefix)

    def feed(self, index: int, choice: dict[str, Any], call: Call) -> Piece | None:
        delta = choice.get("delta") or {}
        text = ""
        if delta.get("content"):
            self.text.append(delta["content"])
            self.tokens += 1
            call.progress(str(index), self.tokens)
            text = self.unecho.feed(delta["content"])
        for part in delta.get("tool_calls") or []:
            slot = self.calls.setdefault(part.get("index", 0), {"id": None, "name": "", "arguments": ""})
            slot["id"] = slot["id"] or part.get("id")
            function = part.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
            self.tokens += 1
        if choice.get("finish_reason"):
            self.reason = FINISH.get(choice["finish_reason"], "error")
            return Piece(index, text + self.unecho.feed("", end=True), self.reason, calls=self.whole_calls())
        return Piece(index, text) if text else None

    def written(self) -> str:
        """What the choice wrote: its text, or its calls."""
        return "".join(self.text) + "".join(c["name"] + c["arguments"] for c in self.calls.values())

    def whole_calls(self) -> list[dict[str, Any]] | None:
        return whole_calls([{"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                            for _, c in sorted(self.calls.items())])


@dataclass
class _Unecho:
    """Drops the prefix from the start of an upstream's answer where the upstream repeats it
    (Mistral's wire does, vLLM's continue_final_message does not): Alizé adds it itself."""

    prefix: str
    held: str = ""
    decided: bool = False

    def feed(self, text: str, end: bool = False) -> str:
        if self.decided or not self.prefix:
            return text
        held = self.held + text
        if not end and len(held) < len(self.prefix) and self.prefix.startswith(held):
            self.held = held  # may still be the prefix repeated
            return ""
        self.decided, self.held = True, ""
        return held[len(self.prefix):] if held.startswith(self.prefix) else held
