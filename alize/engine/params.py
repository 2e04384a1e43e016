"""What a generation request asks of the engine, and what the engine reports back."""

from dataclasses import dataclass
from enum import StrEnum


class FinishReason(StrEnum):
    STOP = "stop"  # an end-of-generation token or a stop string
    LENGTH = "length"  # max_tokens reached
    MODEL_LENGTH = "model_length"  # the context window is full
    ABORT = "abort"  # the client went away
    SHUTDOWN = "shutdown"  # the server is stopping: cut, with what was generated so far
    TIMEOUT = "timeout"  # waited in the queue longer than allowed
    ERROR = "error"  # the engine failed


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0  # 1.0: off
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()
    # End-of-generation tokens are banned until this many tokens are generated.
    min_tokens: int = 0
    # True when max_tokens was derived from the context size rather than asked for.
    is_limit_from_context: bool = False
    # A GBNF grammar (root rule "root") the output must follow: structured output.
    grammar: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How one model's engine is sized (see README: Tuning)."""

    context_per_sequence: int
    max_sequences: int = 8  # sequences decoded together in one batch
    batch_tokens: int = 512  # tokens per llama_decode step (decode + prefill chunks)
    queue_size: int = 64  # requests that may wait for a free sequence
    queue_timeout_s: float = 120.0  # a request waiting longer gets a 503
    threads: int = 2
    # One KV buffer shared by all sequences (llama.cpp's default) or one per sequence.
    kv_unified: bool = False
    # A KV pool of this many bytes shared by the sequences (unified), each admitted when its
    # prompt + max_tokens fit; 0: every sequence gets context_per_sequence cells of its own.
    kv_bytes: int = 0
    kv_bytes_for_context: int = 0  # the pool grows up to this to hold one full context
    # With kv_bytes 0: a budget for the buffers of their own; when max_sequences full contexts
    # would take more, the sequences share a pool of this many bytes instead. 0: no budget.
    kv_budget: int = 0
    kv_type: str = "f16"  # or "q8_0"
    prompt_lookup: bool = False  # requests without a prediction draft from their prompt

    def __post_init__(self) -> None:
        if min(self.context_per_sequence, self.max_sequences, self.batch_tokens, self.threads) < 1:
            raise ValueError("engine sizes must be >= 1")
        if self.queue_size < 0 or self.queue_timeout_s <= 0:
            raise ValueError("queue_size must be >= 0 and queue_timeout_s > 0")
        if min(self.kv_bytes, self.kv_budget) < 0 or self.kv_type not in KV_TYPES:
            raise ValueError(f"kv_bytes and kv_budget must be >= 0, kv_type one of {', '.join(KV_TYPES)}")


# KV cache element types: llama.cpp's ggml type and bytes per value (q8_0: 34 bytes per 32)
KV_TYPES = {"f16": (1, 2.0), "q8_0": (8, 34 / 32)}


@dataclass(slots=True)
class GenerationRequest:
    request_id: str
    prompt_tokens: list[int]
    params: SamplingParams
    # Who may reuse this request's KV (the prefix cache): by default its API key id.
    # None: nobody, and it reuses nothing.
    cache_scope: str | None = None
    # Another choice of the same request (n > 1): once that one has computed the prompt,
    # this one starts from a copy of its KV instead of computing the prompt again.
    shares_prompt_with: str | None = None
    # Lower runs first: interactive requests (0) are admitted and prefilled before
    # background work such as batch jobs (1).
    priority: int = 0
    # The output the client expects (its tokens): drafts verified a batch at a time.
    prediction: list[int] | None = None


INTERACTIVE, BACKGROUND = 0, 1


@dataclass(slots=True)
class TokenEvent:
    """A piece of output text for one request. The last event carries finish_reason."""

    text: str
    num_prompt_tokens: int
    num_completion_tokens: int
    finish_reason: FinishReason | None = None
    error: str | None = None
    num_cached_tokens: int = 0
    queue_s: float | None = None  # on a sequence's first event: how long it waited for a slot
    num_draft_accepted: int = 0  # drafted tokens (from a prediction) the output kept so far
    num_draft_rejected: int = 0  # and those it did not


@dataclass(frozen=True, slots=True)
class BatchItem:
    """Tokens of one sequence to decode this step; logits wanted for the last one or not.
    With a draft, the tokens are the pending one then `num_draft` drafted ones, and each
    position is sampled in turn while the draft holds (speculative verification)."""

    seq_id: int
    tokens: list[int]
    start_pos: int
    wants_logits: bool
    num_draft: int = 0
