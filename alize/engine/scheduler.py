"""Decides what runs each step: admits waiting sequences into free KV slots and builds
one batch of at most `token_budget` tokens: one decode token per running sequence,
then prompt chunks (chunked prefill) with what budget is left. Pure Python."""

from collections import deque

from alize.engine.kv_cache import SlotCache
from alize.engine.params import BatchItem
from alize.engine.sequence import Sequence, SequenceStatus


class Scheduler:
    def __init__(self, max_sequences: int, token_budget: int, queue_timeout_s: float = float("inf")):
        self.token_budget = token_budget
        self.max_sequences = max_sequences
        self.queue_timeout_s = queue_timeout_s
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.slots = SlotCache(max_sequences)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def can_allocate(self) -> bool:
        return self.slots.can_allocate()

    def allocate(self, seq: Sequence) -> None:
        seq.slot, seq.num_cached = self.slots.allocate(seq.request.cache_scope, seq.request.prompt_tokens)
        seq.num_prefilled = seq.num_kv_tokens = seq.num_cached
        seq.status = SequenceStatus.RUNNING
        self.running.append(seq)

    def deallocate(self, seq: Sequence, is_kv_valid: bool = True) -> None:
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self.slots.release(seq.slot, seq.request.cache_scope, seq.tokens_in_kv if is_kv_valid else None)
        elif seq.status is SequenceStatus.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED

    def find(self, request_id: str) -> Sequence | None:
        for seq in (*self.running, *self.waiting):
            if seq.request_id == request_id:
                return seq
        return None

    def expired(self, now: float) -> list[Sequence]:
        """Waiting sequences that have waited longer than the queue timeout."""
        return [s for s in self.waiting if now - s.arrived_at > self.queue_timeout_s]

    def schedule(self) -> tuple[list[Sequence], list[BatchItem]]:
        while self.waiting and self.can_allocate():
            self.allocate(self.waiting.popleft())
        seqs: list[Sequence] = []
        items: list[BatchItem] = []
        budget = self.token_budget
        # decode: one token for every sequence past its prompt
        for seq in self.running:
            if not seq.is_prefilling and budget > 0:
                pos = seq.num_context_tokens - 1
                items.append(BatchItem(seq.slot, [seq.output_tokens[-1]], pos, True))
                seqs.append(seq)
                budget -= 1
        # prefill: prompt chunks with the budget that is left
        for seq in self.running:
            if seq.is_prefilling and budget > 0:
                start = seq.num_prefilled
                chunk = seq.request.prompt_tokens[start : start + budget]
                is_last = start + len(chunk) == seq.num_prompt_tokens
                items.append(BatchItem(seq.slot, chunk, start, is_last))
                seqs.append(seq)
                budget -= len(chunk)
        return seqs, items
