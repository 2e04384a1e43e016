"""POST /v1/completions: OpenAI's plain text completion, on the same engine."""

from collections.abc import AsyncIterator, Iterator

from alize.protocol.completions import CompletionChoice, CompletionRequest, CompletionResponse
from alize.services.chat import usage
from alize.services.fim import fim_prompt_tokens
from alize.services.generation import Prepared, admit, collect, holds_cache, now, started, stream_finish_reason
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import one_or_many
from alize.services.sampling import SamplingFields, build_params, pick_seed

MAX_PROMPTS = 16


def prompts_of(request: CompletionRequest) -> list[str]:
    """The request's prompts (one, or a list of at most MAX_PROMPTS)."""
    return one_or_many(request.prompt, "prompt", MAX_PROMPTS, "prompts", "prompt must not be an empty list")




class CompletionService:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    def prepare(self, request: CompletionRequest, call: Call) -> list[Prepared]:
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
        preps = self.prepare(request, call)
        await admit(preps)
        n, choices, num_prompt, num_completion, num_cached = preps[0].n, [], 0, 0, 0
        for offset, group in _groups(preps):
            result = await collect(*group)  # the group's prompts and choices decoded together
            num_prompt += result.num_prompt_tokens
            num_completion += result.num_completion_tokens
            num_cached += result.num_cached_tokens
            for c in result.choices:
                index = offset + c.index
                choices.append(CompletionChoice(index=index, text=(_echo(request, index // n) if request.echo else "")
                                                + c.text, finish_reason=stream_finish_reason(c.finish_reason)))
        first = preps[0]
        await first.call.succeed()
        return CompletionResponse(id=first.id, created=first.created, model=first.model_id, choices=choices,
                                  usage=usage(num_prompt, num_completion, num_cached))

    async def stream(self, request: CompletionRequest, preps: list[Prepared],
                     include_usage: bool) -> AsyncIterator[CompletionResponse]:
        first, n = preps[0], preps[0].n

        def chunk(choices: list[CompletionChoice], usage_info=None) -> CompletionResponse:
            return CompletionResponse(id=first.id, created=first.created, model=first.model_id,
                                      choices=choices, usage=usage_info)

        await admit(preps)
        num_completion = num_cached = 0
        for offset, group in _groups(preps):
            events = await started(*group)  # for the first group, a refusal is still a JSON error
            if request.echo:
                for index in range(offset, offset + len(group) * n):
                    yield chunk([CompletionChoice(index=index, text=_echo(request, index // n), finish_reason=None)])
            async for index, event in events:
                reason = stream_finish_reason(event.finish_reason) if event.finish_reason else None
                if reason:
                    num_completion += event.num_completion_tokens
                    num_cached += event.num_cached_tokens if holds_cache(index, n) else 0
                yield chunk([CompletionChoice(index=offset + index, text=event.text, finish_reason=reason)])
        await first.call.succeed()
        if include_usage:
            yield chunk([], usage(sum(len(p.prompt_tokens) for p in preps), num_completion, num_cached))


def _groups(preps: list[Prepared]) -> Iterator[tuple[int, list[Prepared]]]:
    """The prompts in groups whose choices all fit in the engine at once (decoded together),
    with the choice index each group starts at."""
    n, capacity = preps[0].n, preps[0].model.engine.capacity
    size = max(1, capacity // n)
    for start in range(0, len(preps), size):
        yield start * n, preps[start:start + size]


def _echo(request: CompletionRequest, prompt: int) -> str:
    return request.prompt if isinstance(request.prompt, str) else request.prompt[prompt]
