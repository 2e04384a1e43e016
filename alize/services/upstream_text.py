"""POST /v1/fim/completions and /v1/completions answered by an upstream engine: the same
admission, limits and metering as the local engine, the upstream's usage billed.

Over OpenAI's wire both go to the engine's /completions (the code after the cursor as
`suffix`, which llama-server and llama-cpp-python's server honour); over Mistral's wire FIM
goes to /fim/completions. A FIM answer comes back in Mistral's chat shape, a completion in
OpenAI's text shape; several prompts are sent one after the other, their choices numbered
as OpenAI numbers them (prompt x n + choice)."""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from alize.errors import UpstreamBroken
from alize.protocol.chat import (
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatMessageOut,
    ChunkChoice,
    DeltaMessage,
)
from alize.protocol.common import UsageInfo
from alize.protocol.completions import CompletionChoice, CompletionRequest, CompletionResponse
from alize.protocol.fim import FIMCompletionRequest
from alize.registry import ModelEntry
from alize.services.completions import prompts_of
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.sampling import pick_seed
from alize.services.upstream_chat import FINISH, usage_from
from alize.upstream.router import affinity_key


@dataclass
class TextPlan:
    entry: ModelEntry
    call: Call
    prompts: list[str]
    suffix: str
    sampling: dict[str, Any]  # OpenAI's names
    max_tokens: int
    n: int
    fim: bool
    created: int = field(default_factory=lambda: int(time.time()))

    def path(self, replica: str) -> str:
        return "/fim/completions" if self.fim and self.entry.replica(replica).wire == "mistral" else "/completions"

    def body(self, replica: str, prompt: str, stream: bool) -> dict[str, Any]:
        backend = self.entry.replica(replica)
        body: dict[str, Any] = {"model": backend.model, "prompt": prompt, "max_tokens": self.max_tokens}
        body |= self.sampling | ({"n": self.n} if self.n > 1 else {})
        if self.suffix:
            body["suffix"] = self.suffix
        if backend.wire == "mistral" and "seed" in body:
            body["random_seed"] = body.pop("seed")
        if stream:
            body["stream"] = True
            if backend.wire == "openai":
                body["stream_options"] = {"include_usage": True}
        return body


@dataclass
class Piece:
    """Text from the upstream for one choice (index over all prompts), or its end."""

    index: int
    text: str
    reason: str | None


def _text(choice: dict[str, Any]) -> str:
    """A choice's text: OpenAI's completion shape, or Mistral's chat shape (FIM)."""
    if "text" in choice:
        return str(choice.get("text") or "")
    return str((choice.get("message") or choice.get("delta") or {}).get("content") or "")


def _sampling(temperature: float | None, top_p: float | None, stop: Any, seed: int | None,
              **more: Any) -> dict[str, Any]:
    fields = {"temperature": temperature, "top_p": top_p, "stop": stop, "seed": seed, **more}
    return {k: v for k, v in fields.items() if v is not None}


class UpstreamText:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    def serves(self, model_id: str) -> bool:
        return self.hub.registry.get(model_id).is_upstream

    async def plan_fim(self, request: FIMCompletionRequest, call: Call) -> TextPlan:
        entry = self.hub.capable(request.model, "completion_fim")
        seed = pick_seed(request.random_seed, request.seed)
        sampling = _sampling(request.temperature, request.top_p, request.stop, seed, min_tokens=request.min_tokens)
        max_tokens = request.max_tokens or entry.backend.default_max_tokens or entry.backend.context_length
        plan = TextPlan(entry, call, [request.prompt], request.suffix or "", sampling, max_tokens, 1, fim=True)
        return await self._admit(plan)

    async def plan_completion(self, request: CompletionRequest, call: Call) -> TextPlan:
        entry = self.hub.capable(request.model, "completion_chat")
        prompts = prompts_of(request)
        seed = pick_seed(request.random_seed, request.seed)
        sampling = _sampling(request.temperature, request.top_p, request.stop, seed,
                             presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
                             logit_bias=request.logit_bias)
        max_tokens = request.max_tokens or entry.backend.default_max_tokens or entry.backend.context_length
        plan = TextPlan(entry, call, prompts, request.suffix or "", sampling, max_tokens, request.n or 1, fim=False)
        return await self._admit(plan)

    async def _admit(self, plan: TextPlan) -> TextPlan:
        count = self.hub.counter(plan.entry)
        prompt = sum(count.text(p + plan.suffix) for p in plan.prompts)
        await plan.call.admit(plan.entry, prompt, plan.max_tokens * plan.n * len(plan.prompts))
        return plan

    def _key(self, plan: TextPlan, prompt: str) -> bytes:
        assert plan.call.key is not None
        return affinity_key(plan.call.key.workspace.id, prompt)

    async def _whole(self, plan: TextPlan) -> tuple[list[Piece], UsageInfo]:
        """Every choice of every prompt, whole, and the usage summed over the prompts."""
        pool, call = self.hub.pool(plan.entry), plan.call
        pieces, prompt_tokens, completion_tokens = [], 0, 0
        count = self.hub.counter(plan.entry)
        for p, prompt in enumerate(plan.prompts):
            replica, answer = await pool.complete(self._key(plan, prompt), plan.path,
                                                  lambda replica, prompt=prompt: plan.body(replica, prompt, False),
                                                  call.trace_headers())
            call.upstream(replica)
            texts = []
            for i, choice in enumerate(answer.get("choices") or []):
                text = _text(choice)
                texts.append(text)
                reason = FINISH.get(choice.get("finish_reason") or "stop", "error")
                pieces.append(Piece(p * plan.n + choice.get("index", i), text, reason))
            figures = usage_from(answer.get("usage"), count.text(prompt + plan.suffix),
                                 sum(count.text(t) for t in texts))
            prompt_tokens += figures.prompt_tokens
            completion_tokens += figures.completion_tokens
        call.upstream()
        call.settle_usage(prompt_tokens, completion_tokens, 0)
        await call.succeed()
        return pieces, UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                 total_tokens=prompt_tokens + completion_tokens)

    async def _pieces(self, plan: TextPlan) -> AsyncIterator[Piece | UsageInfo]:
        """The choices' text as it comes, each choice's end, then the usage (last). A stream
        that breaks off ends its open choices with "error" and bills what was delivered."""
        pool, call = self.hub.pool(plan.entry), plan.call
        count = self.hub.counter(plan.entry)
        prompt_tokens = completion_tokens = 0
        for p, prompt in enumerate(plan.prompts):
            key = self._key(plan, prompt)
            upstream = await pool.stream(key, plan.path,
                                         lambda replica, prompt=prompt: plan.body(replica, prompt, True),
                                         call.trace_headers())
            call.upstream(upstream.replica)
            call.delivering = True  # an answer has begun: what it delivers is billed, even if cut
            figures: dict[str, Any] | None = None
            texts: dict[int, list[str]] = {}  # by choice: its deltas (about a token each)
            open_ = set(range(p * plan.n, (p + 1) * plan.n))
            try:
                async for event in upstream:
                    figures = event.get("usage") or figures
                    for choice in event.get("choices") or []:
                        index = p * plan.n + choice.get("index", 0)
                        text = _text(choice)
                        reason = FINISH.get(choice["finish_reason"], "error") if choice.get("finish_reason") else None
                        if text:
                            texts.setdefault(index, []).append(text)
                            call.progress(str(index), len(texts[index]))
                        if reason:
                            open_.discard(index)
                        if text or reason:
                            yield Piece(index, text, reason)
            except UpstreamBroken:  # broke off: what was delivered is billed
                figures = None
                for index in sorted(open_):
                    yield Piece(index, "", "error")
            finally:
                await upstream.aclose()
                call.upstream()
            delivered = (sum(count.text("".join(t)) for t in texts.values()) if count.exact
                         else sum(len(t) for t in texts.values()))
            done = usage_from(figures, count.text(prompt + plan.suffix), delivered)
            prompt_tokens += done.prompt_tokens
            completion_tokens += done.completion_tokens
        call.settle_usage(prompt_tokens, completion_tokens, 0)
        await call.succeed()
        yield UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens)

    # -- FIM: Mistral's chat shape ---------------------------------------------
    async def fim(self, request: FIMCompletionRequest, call: Call) -> ChatCompletionResponse:
        plan = await self.plan_fim(request, call)
        pieces, usage = await self._whole(plan)
        choices = [ChatChoice(index=p.index, message=ChatMessageOut(content=p.text), finish_reason=p.reason or "stop")
                   for p in pieces]
        return ChatCompletionResponse(id=call.id, created=plan.created, model=request.model, choices=choices,
                                      usage=usage)

    async def fim_stream(self, plan: TextPlan, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
        def chunk(choices: list[ChunkChoice], usage: UsageInfo | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=plan.call.id, created=plan.created, model=plan.entry.id, choices=choices,
                                       usage=usage)

        yield chunk([ChunkChoice(index=0, delta=DeltaMessage(role="assistant", content=""))])
        held: ChunkChoice | None = None  # the last text, sent with the usage when it ends the answer
        async for piece in self._pieces(plan):
            if isinstance(piece, UsageInfo):
                if include_usage:
                    yield chunk([held] if held else [])
                    yield chunk([], piece)
                else:
                    yield chunk([held] if held else [], piece)
                return
            if held is not None:
                yield chunk([held])
            held = ChunkChoice(index=0, delta=DeltaMessage(content=piece.text), finish_reason=piece.reason)

    # -- completions: OpenAI's text shape --------------------------------------
    async def completion(self, request: CompletionRequest, call: Call) -> CompletionResponse:
        plan = await self.plan_completion(request, call)
        pieces, usage = await self._whole(plan)
        choices = [CompletionChoice(index=p.index, text=(self._echo(request, p.index // plan.n) if request.echo
                                                         else "") + p.text, finish_reason=p.reason)
                   for p in sorted(pieces, key=lambda p: p.index)]
        return CompletionResponse(id=call.id, created=plan.created, model=request.model, choices=choices, usage=usage)

    async def completion_stream(self, request: CompletionRequest, plan: TextPlan,
                                include_usage: bool) -> AsyncIterator[CompletionResponse]:
        def chunk(choices: list[CompletionChoice], usage: UsageInfo | None = None) -> CompletionResponse:
            return CompletionResponse(id=plan.call.id, created=plan.created, model=request.model, choices=choices,
                                      usage=usage)

        if request.echo:
            for index in range(len(plan.prompts) * plan.n):
                yield chunk([CompletionChoice(index=index, text=self._echo(request, index // plan.n),
                                              finish_reason=None)])
        async for piece in self._pieces(plan):
            if isinstance(piece, UsageInfo):
                if include_usage:
                    yield chunk([], piece)
                return
            yield chunk([CompletionChoice(index=piece.index, text=piece.text, finish_reason=piece.reason)])

    @staticmethod
    def _echo(request: CompletionRequest, prompt: int) -> str:
        return request.prompt if isinstance(request.prompt, str) else request.prompt[prompt]
