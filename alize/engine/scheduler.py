"""Decides what runs each step: admits waiting sequences into free KV slots and builds
one batch of at most `token_budget` tokens: one decode token per running sequence,
then prompt chunks (chunked prefill) with what budget is left. Pure Python."""

from collections import deque

from alize.engine.kv_cache import SlotCache
from alize.engine.params import BatchItem
from alize.engine.sequence import Sequence, SequenceStatus

# Copying a sequence's KV copies its whole buffer (context_per_sequence cells): worth it
# over recomputing the prompt only for prompts at least this long.
MIN_SHARED_PROMPT = 128


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

    def allocate(self, seq: Sequence, copy_from: Sequence | None = None) -> None:
        """Gives the sequence a slot: with the KV of a cached prefix, or with the prompt KV
        of `copy_from` (another choice of the same request, its prompt computed)."""
        if copy_from is None:
            seq.slot, seq.num_cached = self.slots.allocate(seq.request.cache_scope, seq.request.prompt_tokens)
        else:
            seq.slot, _ = self.slots.allocate(None, seq.request.prompt_tokens)
            seq.copy_kv_from = copy_from.slot
            seq.num_cached = seq.num_prompt_tokens - 1  # the last prompt token is decoded for its logits
        seq.num_prefilled = seq.num_kv_tokens = seq.num_cached
        seq.status = SequenceStatus.RUNNING
        self.running.append(seq)

    def _prompt_source(self, seq: Sequence) -> tuple[bool, Sequence | None]:
        """(may start now, running sequence to copy the prompt KV from)."""
        leader_id = seq.request.shares_prompt_with
        if leader_id is None or seq.num_prompt_tokens < MIN_SHARED_PROMPT:
            return True, None
        leader = self.find(leader_id)
        if leader is None:  # finished already: compute the prompt
            return True, None
        if leader.status is not SequenceStatus.RUNNING or leader.num_kv_tokens < leader.num_prompt_tokens:
            return False, None  # wait for the leader to compute the prompt
        return True, leader

    def _admit(self) -> None:
        """Moves waiting sequences into free slots, in arrival order; a choice that waits for
        another's prompt steps aside without holding up those behind it."""
        for seq in list(self.waiting):
            if not self.can_allocate():
                return
            may_start, source = self._prompt_source(seq)
            if may_start:
                self.waiting.remove(seq)
                self.allocate(seq, source)

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
        self._admit()
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
