"""POST /v1/completions: OpenAI's plain text completion, whichever backend serves the model."""

from collections.abc import AsyncIterator

from alize.protocol.common import UsageInfo
from alize.protocol.completions import CompletionChoice, CompletionRequest, CompletionResponse
from alize.services.backend import Generation, collect
from alize.services.fim import fim_prompt_tokens
from alize.services.generation import LocalGeneration, Prepared, now, stream_finish_reason
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import prompts_of
from alize.services.sampling import SamplingFields, build_params, pick_seed
from alize.services.upstream_text import UpstreamText


class CompletionService:
    def __init__(self, hub: ModelHub, upstream: UpstreamText):
        self.hub = hub
        self.upstream = upstream

    async def generation(self, request: CompletionRequest, call: Call, stream: bool) -> Generation:
        """The request checked, admitted and ready to run on the backend that serves its model."""
        if self.hub.registry.get(request.model).is_upstream:
            return await self.upstream.completion(request, call, stream)
        return await LocalGeneration(self.prepare(request, call), stream).admit()

    def prepare(self, request: CompletionRequest, call: Call) -> list[Prepared]:
        """The request for the local engine: each prompt's tokens and sampling parameters."""
        prompts = prompts_of(request)
        entry, model = self.hub.chat_model(request.model)
        fields = SamplingFields(
            temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens,
            stop=request.stop, seed=pick_seed(request.random_seed, request.seed),
            presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
            logit_bias=request.logit_bias,
        )
        preps, created = [], now()
        for prompt in prompts:
            tokens = fim_prompt_tokens(model, prompt, request.suffix or "")
            params = build_params(fields, len(tokens), entry.backend, model.n_vocab, model.context_length)
            preps.append(Prepared(entry, model, tokens, params, n=request.n or 1, call=call, created=created))
        return preps

    async def complete(self, request: CompletionRequest, call: Call) -> CompletionResponse:
        return await self.respond(request, await self.generation(request, call, stream=False))

    async def respond(self, request: CompletionRequest, gen: Generation) -> CompletionResponse:
        ends, usage = await collect(gen)
        choices = [CompletionChoice(index=end.index, text=(_echo(request, end.index // gen.n) if request.echo else "")
                                    + text, finish_reason=stream_finish_reason(end.finish or "stop"))
                   for end, text in ends]
        return CompletionResponse(id=gen.id, created=gen.created, model=gen.model_id, choices=choices, usage=usage)

    async def stream(self, request: CompletionRequest, gen: Generation,
                     include_usage: bool) -> AsyncIterator[CompletionResponse]:
        def chunk(choices: list[CompletionChoice], usage: UsageInfo | None = None) -> CompletionResponse:
            return CompletionResponse(id=gen.id, created=gen.created, model=gen.model_id, choices=choices, usage=usage)

        pieces = await gen.start()  # a refusal is still a JSON error
        if request.echo:
            for index in range(len(prompts_of(request)) * gen.n):
                yield chunk([CompletionChoice(index=index, text=_echo(request, index // gen.n), finish_reason=None)])
        async for piece in pieces:
            reason = stream_finish_reason(piece.finish) if piece.finish else None
            yield chunk([CompletionChoice(index=piece.index, text=piece.text, finish_reason=reason)])
        usage = gen.usage()
        await gen.call.succeed()
        if include_usage:
            yield chunk([], usage)


def _echo(request: CompletionRequest, prompt: int) -> str:
    return request.prompt if isinstance(request.prompt, str) else request.prompt[prompt]
