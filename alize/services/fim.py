"""POST /v1/fim/completions: code before and after the cursor in, the middle out, whichever
backend serves the model.

With a model that has FIM tokens the prompt is <PRE>prefix<SUF>suffix<MID> (the
prefix-suffix-middle order). A model without them (the built-in SmolLM2) gets
plain continuation when the suffix is empty, and otherwise a chat prompt that
shows both sides and asks for the missing middle (FIM_INSTRUCTION)."""

from collections.abc import AsyncIterator

from alize.engine.chat_model import ChatModel
from alize.errors import InvalidRequest
from alize.protocol.chat import ChatCompletionChunk, ChatCompletionResponse
from alize.protocol.fim import FIMCompletionRequest
from alize.services.backend import Generation
from alize.services.chat import ChatService
from alize.services.generation import LocalGeneration, Prepared
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.sampling import SamplingFields, build_params, pick_seed
from alize.services.upstream_text import UpstreamText

FIM_INSTRUCTION = (
    "Complete the code at <CURSOR>. Reply with only the code that replaces <CURSOR>, "
    "with no explanation and no code fences."
)


def fim_prompt_tokens(model: ChatModel, prompt: str, suffix: str) -> list[int]:
    tokens = _fim_prompt_tokens(model, prompt, suffix)
    if not tokens:  # an empty prompt: start from BOS when the model has one
        bos = model.special_token("bos")
        if bos < 0:
            raise InvalidRequest("The prompt is empty", param="prompt")
        tokens = [bos]
    return tokens


def _fim_prompt_tokens(model: ChatModel, prompt: str, suffix: str) -> list[int]:
    if model.has_fim_tokens:
        pre, suf, mid = model.fim_tokens
        bos = [model.special_token("bos")] if model.adds_bos else []
        return [*bos, pre, *model.tokenize_text(prompt), suf, *model.tokenize_text(suffix), mid]
    if not suffix:
        bos = model.special_token("bos")
        head = [bos] if model.adds_bos and bos >= 0 else []
        return head + model.tokenize_text(prompt)
    messages = [
        {"role": "system", "content": FIM_INSTRUCTION},
        {"role": "user", "content": f"{prompt}<CURSOR>{suffix}"},
    ]
    return model.tokenize_prompt(model.template.render(messages, add_generation_prompt=True))


class FIMService:
    def __init__(self, hub: ModelHub, chat: ChatService, upstream: UpstreamText):
        self.hub = hub
        self.chat = chat  # a FIM answer is in chat's shapes
        self.upstream = upstream

    async def generation(self, request: FIMCompletionRequest, call: Call, stream: bool) -> Generation:
        """The request checked, admitted and ready to run on the backend that serves its model."""
        if self.hub.registry.get(request.model).is_upstream:
            return await self.upstream.fim(request, call, stream)
        return await LocalGeneration([self.prepare(request, call)], stream).admit()

    def prepare(self, request: FIMCompletionRequest, call: Call) -> Prepared:
        """The request for the local engine: its prompt's tokens and sampling parameters."""
        entry, model = self.hub.chat_model(request.model, capability="completion_fim")
        tokens = fim_prompt_tokens(model, request.prompt, request.suffix or "")
        fields = SamplingFields(
            temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens,
            stop=request.stop, seed=pick_seed(request.random_seed, request.seed),
            min_tokens=request.min_tokens,
        )
        params = build_params(fields, len(tokens), entry.backend, model.n_vocab, model.context_length)
        return Prepared(entry, model, tokens, params, call=call)

    async def complete(self, request: FIMCompletionRequest, call: Call) -> ChatCompletionResponse:
        return await self.chat.respond(await self.generation(request, call, stream=False))

    def frames(self, gen: Generation, include_usage: bool) -> AsyncIterator[ChatCompletionChunk | bytes]:
        return self.chat.frames(gen, include_usage)
