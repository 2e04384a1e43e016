"""One generation in flight: its tokens, its KV slot, its sampler, where its output goes."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from alize.engine.drafting import Drafter
from alize.engine.params import GenerationRequest, TokenEvent
from alize.engine.text import TextAssembler


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


@dataclass(eq=False)
class Sequence:
    request: GenerationRequest
    sink: Callable[[TokenEvent], None]
    assembler: TextAssembler
    status: SequenceStatus = SequenceStatus.WAITING
    slot: int = -1
    sampler: Any = None
    num_prefilled: int = 0
    num_cached: int = 0  # prompt tokens whose KV was reused from the prefix cache
    num_kv_tokens: int = 0  # tokens whose KV the slot holds
    copy_kv_from: int | None = None  # a slot whose prompt KV is copied in before the first step
    output_tokens: list[int] = field(default_factory=list)
    arrived_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None  # when it was given a slot
    reported_start: bool = False  # its queue time went out with an event
    drafter: Drafter | None = None  # drafts for speculative verification (a prediction, the prompt)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.request.prompt_tokens)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.output_tokens)

    @property
    def is_prefilling(self) -> bool:
        return self.num_prefilled < self.num_prompt_tokens

    @property
    def tokens_in_kv(self) -> list[int]:
        """The tokens whose KV this sequence's slot holds."""
        return [*self.request.prompt_tokens, *self.output_tokens][: self.num_kv_tokens]

    @property
    def num_context_tokens(self) -> int:
        """Tokens in the KV cache once the pending token is decoded."""
        return self.num_prompt_tokens + self.num_completion_tokens
