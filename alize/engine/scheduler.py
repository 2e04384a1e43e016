"""Decides what runs each step: admits waiting sequences into free KV slots and builds
one batch of at most `token_budget` tokens: one decode token per running sequence (and a
draft to verify after it, for those that have a drafter: engine/drafting.py), then prompt
chunks (chunked prefill) with what budget is left. Interactive requests are
admitted first, and background ones (batch jobs) mostly wait while they run. Pure Python."""

import time
from collections import deque

from alize.engine.drafting import FREE, StepCost
from alize.engine.kv_cache import SlotCache, common_prefix
from alize.engine.params import BatchItem
from alize.engine.sequence import Sequence, SequenceStatus

# A prompt prefix is copied from another slot's KV rather than computed when that saves
# at least MIN_COPY tokens and one token per COPY_CELLS_PER_TOKEN cells the copy moves
# (it moves every cell the source holds). Measured here (SmolLM2-135M, 2 threads): a
# cell copies in ~10 µs, a prompt token computes in ~2.5 ms; this keeps a margin of two.
# Shorter copies save little, and they change how the rest of a prompt is chunked compared
# with the same request run alone, which was seen to flip a near-tie in greedy output.
MIN_COPY = 16
COPY_CELLS_PER_TOKEN = 128


# While interactive requests run, background sequences run one step in this many.
BACKGROUND_SHARE = 8


class Scheduler:
    def __init__(self, max_sequences: int, token_budget: int, queue_timeout_s: float = float("inf"),
                 min_copy: int = MIN_COPY, background_share: int = BACKGROUND_SHARE, kv_pool: int | None = None,
                 step_cost: StepCost = FREE):
        self.token_budget = token_budget
        # What a step costs by how many tokens it decodes (the runner measures it): drafts are
        # made only where what they are expected to save pays for what they add.
        self.step_cost = step_cost
        # One KV pool of this many cells for every sequence (None: a buffer per slot): a
        # sequence is admitted when what it may use, prompt + max_tokens, fits beside what
        # the running ones may use; free slots' cached prefixes give way, oldest first.
        self.kv_pool = kv_pool
        self.cleared: list[int] = []  # free slots whose cache gave way: the runner drops their KV
        self.min_copy = min_copy
        self.max_sequences = max_sequences
        self.queue_timeout_s = queue_timeout_s
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.slots = SlotCache(max_sequences)
        self.background_share = background_share
        self._deferred_steps = 0

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def can_allocate(self) -> bool:
        return self.slots.can_allocate()

    def allocate(self, seq: Sequence, copy_from: Sequence | None = None) -> None:
        """Gives the sequence a slot and the longest prompt prefix whose KV it can have:
        the slot's own cache, a copy of a running sequence's KV or of a free slot's cache
        in the same scope, or the prompt KV of `copy_from` (another choice of the same
        request, its prompt computed)."""
        scope, prompt = seq.request.cache_scope, seq.request.prompt_tokens
        seq.slot, seq.num_cached, lender = self.slots.take(scope, prompt)
        # (slot, prefix length, cells the slot holds, whether the slot is free), longest first
        sources = ([(copy_from.slot, seq.num_prompt_tokens, copy_from.num_kv_tokens, False)] if copy_from
                   else [(*self._longest_prefix(seq), False), (*lender, True)])
        for source, length, cells, is_free in sorted(sources, key=lambda option: -option[1]):
            length = min(length, seq.num_prompt_tokens - 1)  # the last prompt token is decoded for its logits
            if source is not None and self._is_copy_worth(length - seq.num_cached, cells):
                seq.copy_kv_from, seq.num_cached = source, length
                if is_free:  # kept as it is until the engine has copied it
                    self.slots.pin(source)
                break
        seq.num_prefilled = seq.num_kv_tokens = seq.num_cached
        seq.status = SequenceStatus.RUNNING
        seq.started_at = time.monotonic()
        self.running.append(seq)

    def _is_copy_worth(self, saved: int, cells: int) -> bool:
        return saved >= self.min_copy and saved * COPY_CELLS_PER_TOKEN >= cells

    def _longest_prefix(self, seq: Sequence) -> tuple[int | None, int, int]:
        """(slot, length, cells the slot holds) of the longest prefix of the prompt held by a
        running sequence's KV (free slots' caches: SlotCache.take)."""
        scope, prompt = seq.request.cache_scope, seq.request.prompt_tokens
        if scope is None:
            return None, 0, 0
        best: tuple[int | None, int, int] = None, 0, 0
        for other in self.running:
            if other is seq or other.request.cache_scope != scope:
                continue
            if other.sampler is not None:  # started: its KV holds what it has computed
                held = other.tokens_in_kv
            elif other.copy_kv_from is None:  # starting on its slot's cache, which holds this much
                held = other.request.prompt_tokens[: other.num_cached]
            else:
                continue
            n = common_prefix(held, prompt)
            if n > best[1]:
                best = other.slot, n, len(held)
        return best

    def _prompt_source(self, seq: Sequence) -> tuple[bool, Sequence | None]:
        """(may start now, running sequence to copy the prompt KV from)."""
        leader_id = seq.request.shares_prompt_with
        if leader_id is None or seq.num_prompt_tokens - 1 < self.min_copy:
            return True, None
        leader = self.find(leader_id)
        if leader is None:  # finished already: compute the prompt
            return True, None
        if leader.status is not SequenceStatus.RUNNING or leader.num_kv_tokens < leader.num_prompt_tokens:
            return False, None  # wait for the leader to compute the prompt
        return True, leader

    def _admit(self) -> None:
        """Moves waiting sequences into free slots, by priority then arrival; a choice that
        waits for another's prompt steps aside without holding up those behind it. With a
        KV pool, one that does not fit yet waits, and so do those behind it (no overtaking:
        a long request is not starved by short ones)."""
        for seq in sorted(self.waiting, key=lambda s: s.request.priority):
            if not self.can_allocate():
                return
            may_start, source = self._prompt_source(seq)
            if may_start:
                if not self._make_room(seq):
                    return
                self.waiting.remove(seq)
                self.allocate(seq, source)

    @staticmethod
    def need(seq: Sequence) -> int:
        """The KV cells a sequence may come to hold: its prompt and max_tokens."""
        return seq.num_prompt_tokens + seq.request.params.max_tokens

    def _make_room(self, seq: Sequence) -> bool:
        """Whether the sequence fits the KV pool now, giving up free slots' caches (oldest
        first) where that makes it fit."""
        if self.kv_pool is None:
            return True
        running = sum(self.need(s) for s in self.running)
        if running + self.need(seq) > self.kv_pool:
            return False
        slot, _ = self.slots.choose(seq.request.cache_scope, seq.request.prompt_tokens)
        # the slot it takes keeps only the prefix it reuses, which its need already counts
        while running + self.slots.held_cells() - self.slots.cached_cells(slot) + self.need(seq) > self.kv_pool:
            evicted = self.slots.evict_oldest(keep=slot)
            if evicted is None:  # what is left is pinned for a copy this step: room next step
                return False
            self.cleared.append(evicted)
        return True

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

    def _cutoff(self) -> int | None:
        """The lowest priority (highest number) that may run this step; None: every one.
        While interactive sequences run, background ones (batch jobs) sit out, except one
        step in `background_share` so that they still progress; never in a step that
        prefills an interactive prompt, whose time to first token they would lengthen."""
        if not self.running:
            return None
        top = min(s.request.priority for s in self.running)
        if all(s.request.priority == top for s in self.running):
            return None
        if any(s.is_prefilling and s.request.priority == top for s in self.running):
            return top
        self._deferred_steps += 1
        if self._deferred_steps < self.background_share:
            return top
        self._deferred_steps = 0
        return None

    def schedule(self) -> tuple[list[Sequence], list[BatchItem]]:
        """One token for every decoding sequence, then prompt chunks with the budget left,
        for the sequences whose priority runs this step (_cutoff)."""
        self.slots.unpin_all()  # the engine copied last step's prefixes before this step
        self._admit()
        cutoff = self._cutoff()
        runs = [s for s in self.running if cutoff is None or s.request.priority <= cutoff]
        seqs: list[Sequence] = []
        items: list[BatchItem] = []
        budget = self.token_budget
        decoding = [s for s in runs if not s.is_prefilling][:budget]
        spare = budget - len(decoding)  # drafts share what one token per decoding sequence leaves
        for seq in decoding:  # a draft must pay for what it adds to the whole step's time
            pos = seq.num_context_tokens - 1
            draft = self._draft(seq, spare, self.step_cost, len(decoding) - 1)
            items.append(BatchItem(seq.slot, [seq.output_tokens[-1], *draft], pos, True, len(draft)))
            seqs.append(seq)
            spare -= len(draft)
        budget = spare
        for seq in sorted((s for s in runs if s.is_prefilling), key=lambda s: s.request.priority):
            if budget > 0:
                start = seq.num_prefilled
                chunk = seq.request.prompt_tokens[start : start + budget]
                is_last = start + len(chunk) == seq.num_prompt_tokens
                items.append(BatchItem(seq.slot, chunk, start, is_last))
                seqs.append(seq)
                budget -= len(chunk)
        return seqs, items

    @staticmethod
    def _draft(seq: Sequence, spare: int, cost: StepCost = FREE, others: int = 0) -> list[int]:
        """Tokens to verify after the sequence's pending one: none past max_tokens (nor,
        while end-of-generation is banned, past min_tokens), within the budget, and as many
        as pay for their `cost` (engine/drafting.py)."""
        if seq.drafter is None:
            return []
        params, done = seq.request.params, seq.num_completion_tokens
        most = min(spare, params.max_tokens - done - 1)
        if done < params.min_tokens:
            most = min(most, params.min_tokens - done - 1)
        return seq.drafter.propose(seq.output_tokens, most, cost, others)
