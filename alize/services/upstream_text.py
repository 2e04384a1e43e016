"""FIM and completions on an upstream engine as a backend: the same admission, limits and
metering as the local engine, the upstream's usage billed; the answers read back as the
pieces the FIM and completion use cases turn into their shapes.

Over OpenAI's wire both go to the engine's /completions (the code after the cursor as
`suffix`, which llama-server and llama-cpp-python's server honour); over Mistral's wire FIM
goes to /fim/completions. A FIM answer comes back in Mistral's chat shape, a completion in
OpenAI's text shape; several prompts are sent one after the other."""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from alize.errors import UpstreamBroken
from alize.protocol.common import UsageInfo
from alize.protocol.completions import CompletionRequest
from alize.protocol.fim import FIMCompletionRequest
from alize.registry import ModelEntry
from alize.services.backend import Generation, Piece, usage_info
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import prompts_of
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

    async def fim(self, request: FIMCompletionRequest, call: Call, stream: bool) -> "TextGeneration":
        entry = self.hub.capable(request.model, "completion_fim")
        seed = pick_seed(request.random_seed, request.seed)
        sampling = _sampling(request.temperature, request.top_p, request.stop, seed, min_tokens=request.min_tokens)
        max_tokens = request.max_tokens or entry.backend.default_max_tokens or entry.backend.context_length
        plan = TextPlan(entry, call, [request.prompt], request.suffix or "", sampling, max_tokens, 1, fim=True)
        return await self._admit(plan, stream)

    async def completion(self, request: CompletionRequest, call: Call, stream: bool) -> "TextGeneration":
        entry = self.hub.capable(request.model, "completion_chat")
        prompts = prompts_of(request)
        seed = pick_seed(request.random_seed, request.seed)
        sampling = _sampling(request.temperature, request.top_p, request.stop, seed,
                             presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
                             logit_bias=request.logit_bias)
        max_tokens = request.max_tokens or entry.backend.default_max_tokens or entry.backend.context_length
        plan = TextPlan(entry, call, prompts, request.suffix or "", sampling, max_tokens, request.n or 1, fim=False)
        return await self._admit(plan, stream)

    async def _admit(self, plan: TextPlan, stream: bool) -> "TextGeneration":
        count = self.hub.counter(plan.entry)
        prompt = sum(count.text(p + plan.suffix) for p in plan.prompts)
        await plan.call.admit(plan.entry, prompt, plan.max_tokens * plan.n * len(plan.prompts))
        return TextGeneration(self.hub, plan, stream)



class TextGeneration(Generation):
    """FIM or completion prompts on an upstream's replicas, one prompt after the other; its
    choices come back as pieces, numbered as OpenAI numbers them (prompt x n + choice)."""

    def __init__(self, hub: ModelHub, plan: TextPlan, stream: bool):
        super().__init__(call=plan.call, model_id=plan.entry.id, n=plan.n, created=plan.created)
        self.hub, self.plan, self.stream = hub, plan, stream
        self.prompt_tokens = self.completion_tokens = 0

    def _key(self, prompt: str) -> bytes:
        assert self.call.key is not None
        return affinity_key(self.call.key.workspace.id, prompt)

    async def start(self) -> AsyncIterator[Piece]:
        # the first prompt is sent now: failures before it answers are still a JSON error
        return self._pieces(await self._send(0))

    async def _send(self, p: int) -> Any:
        plan, prompt = self.plan, self.plan.prompts[p]
        pool = self.hub.pool(plan.entry)
        if not self.stream:
            replica, answer = await pool.complete(self._key(prompt), plan.path,
                                                  lambda replica: plan.body(replica, prompt, False),
                                                  self.call.trace_headers())
            self.call.upstream(replica)
            return answer
        upstream = await pool.stream(self._key(prompt), plan.path, lambda replica: plan.body(replica, prompt, True),
                                     self.call.trace_headers())
        self.call.upstream(upstream.replica)
        self.call.delivering = True  # an answer has begun: what it delivers is billed, even if cut
        return upstream

    async def _pieces(self, first: Any) -> AsyncIterator[Piece]:
        count = self.hub.counter(self.plan.entry)
        for p, prompt in enumerate(self.plan.prompts):
            answer = first if p == 0 else await self._send(p)
            texts: dict[int, list[str]] = {}  # by choice: its deltas (about a token each)
            if self.stream:
                async for piece in self._streamed(answer, p, texts):
                    yield piece
                figures = self.figures
                delivered = (sum(count.text("".join(t)) for t in texts.values()) if count.exact
                             else sum(len(t) for t in texts.values()))
            else:
                for i, choice in enumerate(answer.get("choices") or []):
                    index = p * self.n + choice.get("index", i)
                    texts[index] = [_text(choice)]
                    yield Piece(index, texts[index][0], FINISH.get(choice.get("finish_reason") or "stop", "error"))
                figures = answer.get("usage")
                delivered = sum(count.text(t[0]) for t in texts.values())
            self.call.upstream()
            done = usage_from(figures, count.text(prompt + self.plan.suffix), delivered)
            self.prompt_tokens += done.prompt_tokens
            self.completion_tokens += done.completion_tokens
        self.call.settle_usage(self.prompt_tokens, self.completion_tokens, 0)

    async def _streamed(self, upstream: Any, p: int, texts: dict[int, list[str]]) -> AsyncIterator[Piece]:
        """Prompt p's choices as they come, each one's end, and the upstream's usage figures
        (self.figures). A stream that breaks off ends its open choices with "error", and
        what was delivered is billed."""
        self.figures: dict[str, Any] | None = None
        open_ = set(range(p * self.n, (p + 1) * self.n))
        try:
            async for event in upstream:
                self.figures = event.get("usage") or self.figures
                for choice in event.get("choices") or []:
                    index = p * self.n + choice.get("index", 0)
                    text = _text(choice)
                    reason = FINISH.get(choice["finish_reason"], "error") if choice.get("finish_reason") else None
                    if text:
                        texts.setdefault(index, []).append(text)
                        self.call.progress(str(index), len(texts[index]))
                    if reason:
                        open_.discard(index)
                    if text or reason:
                        yield Piece(index, text, reason)
        except UpstreamBroken:
            self.figures = None
            for index in sorted(open_):
                yield Piece(index, "", "error")
            open_.clear()
        finally:
            await upstream.aclose()  # a client gone: the upstream stops generating
        for index in sorted(open_):  # ended without a reason: as if stopped
            yield Piece(index, "", "stop")

    def usage(self) -> UsageInfo:
        return usage_info(self.prompt_tokens, self.completion_tokens)
