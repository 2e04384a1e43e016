"""From request fields to engine SamplingParams, with the context-size check."""

from dataclasses import dataclass

from alize.engine.params import SamplingParams
from alize.errors import ContextOverflow, InvalidRequest
from alize.registry import Backend

MAX_STOP_STRINGS = 16


@dataclass
class SamplingFields:
    """The sampling fields common to chat, FIM and completions, already reconciled
    between their Mistral and OpenAI spellings."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    grammar: str | None = None  # structured output: the GBNF grammar the output must follow


def pick_seed(random_seed: int | None, seed: int | None) -> int | None:
    return random_seed if random_seed is not None else seed


def build_params(fields: SamplingFields, num_prompt_tokens: int, backend: Backend,
                 n_vocab: int, context_length: int | None = None) -> SamplingParams:
    """Sampling parameters for one request; raises ContextOverflow when it cannot fit.
    `context_length`: the longest sequence the engine holds, when its KV cache is smaller
    than the model's context (a request longer than that could never be admitted)."""
    kv_limited = context_length is not None and context_length < backend.context_length
    context_length = context_length if context_length is not None and kv_limited else backend.context_length
    where = (f"{context_length} tokens of KV cache (ALIZE_KV_CACHE_MB) for model with "
             f"{backend.context_length}" if kv_limited else f"model with {context_length}")
    room = context_length - num_prompt_tokens
    if fields.max_tokens is None and backend.default_max_tokens is not None and room > 0:
        max_tokens = min(backend.default_max_tokens, room)
        is_from_context = max_tokens == room
    elif fields.max_tokens is None:
        if room <= 0:
            raise ContextOverflow(
                f"Prompt contains {num_prompt_tokens} tokens, too large for {where} maximum context length",
                param="messages")
        max_tokens, is_from_context = room, True
    else:
        if fields.max_tokens > room:
            raise ContextOverflow(
                f"Prompt contains {num_prompt_tokens} tokens and max_tokens is "
                f"{fields.max_tokens} ({num_prompt_tokens + fields.max_tokens} in all), too large "
                f"for {where} maximum context length", param="max_tokens")
        max_tokens, is_from_context = fields.max_tokens, False
    if fields.grammar is not None and fields.min_tokens:
        raise InvalidRequest("min_tokens cannot be combined with a response_format: the answer ends "
                             "where its JSON ends", param="min_tokens")
    stop = fields.stop
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"At most {MAX_STOP_STRINGS} stop strings are allowed", param="stop")
    temperature = fields.temperature
    if temperature is None:
        temperature = backend.default_temperature if backend.default_temperature is not None else 0.7
    top_p = 1.0 if fields.top_p is None else fields.top_p
    if top_p == 0.0:  # "keep only the most likely token"
        temperature = 0.0
        top_p = 1.0
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=fields.seed,
        presence_penalty=fields.presence_penalty or 0.0,
        frequency_penalty=fields.frequency_penalty or 0.0,
        stop=stops,
        logit_bias=_logit_bias(fields.logit_bias, n_vocab),
        is_limit_from_context=is_from_context,
        min_tokens=min(fields.min_tokens or 0, max_tokens),
        top_k=fields.top_k or 0,
        repetition_penalty=backend.default_repetition_penalty if fields.repetition_penalty is None
        else fields.repetition_penalty,
        grammar=fields.grammar,
    )


def _logit_bias(bias: dict[str, float] | None, n_vocab: int) -> tuple[tuple[int, float], ...]:
    out = []
    for key, value in (bias or {}).items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequest(f"logit_bias key {key!r} is not a token id", param="logit_bias") from None
        if not 0 <= token < n_vocab:
            raise InvalidRequest(f"logit_bias token {token} is outside the vocabulary (0..{n_vocab - 1})",
                                 param="logit_bias")
        out.append((token, float("-inf") if value <= -100 else float(value)))
    return tuple(out)
