"""KV slots and the prefix cache.

Each running sequence owns one slot (a llama.cpp sequence id with its own KV buffer).
When a sequence ends its KV stays in the slot, labelled with the tokens it holds and
the scope (by default the API key) that produced them. A new request takes the free
slot whose cached tokens share the longest prefix with its prompt *within the same
scope* (when that prefix is worth the slot: SlotCache.choose; otherwise the prefix is
copied into another slot), so only the rest of the prompt is computed. Another scope
never sees it."""

import itertools
from dataclasses import dataclass


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Cached:
    scope: str
    tokens: list[int]
    released_at: int


class SlotCache:
    def __init__(self, num_slots: int):
        self.num_slots = num_slots
        self._free: dict[int, _Cached | None] = dict.fromkeys(range(num_slots))
        self._clock = itertools.count()
        # free slots whose cache a sequence admitted this step copies its prefix from: no
        # other takes or empties them before the engine has made the copy (unpin_all)
        self._pinned: set[int] = set()

    def can_allocate(self) -> bool:
        return len(self._free) > len(self._pinned)

    def pin(self, slot: int) -> None:
        assert slot in self._free
        self._pinned.add(slot)

    def unpin_all(self) -> None:
        """The copies of the last step are made: every free slot may be taken again."""
        self._pinned.clear()

    def _running_neighbours(self, slot: int) -> int:
        """llama.cpp decodes each run of consecutive running slots in its own micro-batch:
        a slot between two running ones joins two runs, one next to a running one
        extends a run, any other starts a new run."""
        return sum(0 <= s < self.num_slots and s not in self._free for s in (slot - 1, slot + 1))

    def allocate(self, scope: str | None, prompt: list[int]) -> tuple[int, int]:
        """Takes a free slot; returns it and how many prompt tokens its KV already holds.
        At least one prompt token is always left to compute (its logits are needed)."""
        slot, cached, _ = self.take(scope, prompt)
        return slot, cached

    def take(self, scope: str | None, prompt: list[int]) -> tuple[int, int, tuple[int | None, int, int]]:
        """allocate(), and what longest_free_prefix() then gives, from one comparison of
        the prompt with each free slot's cache (the engine thread does it between steps)."""
        matches = self._matches(scope, prompt)
        slot = self._pick(matches)
        del self._free[slot]
        return slot, min(matches.pop(slot), len(prompt) - 1), self._longest(matches)

    def choose(self, scope: str | None, prompt: list[int]) -> tuple[int, int]:
        """The free slot allocate() would take, and the prompt tokens its cache holds."""
        matches = self._matches(scope, prompt)
        slot = self._pick(matches)
        return slot, matches[slot]

    def longest_free_prefix(self, scope: str | None, prompt: list[int]) -> tuple[int | None, int, int]:
        """(slot, length, cells it holds) of the free slot whose cache holds the longest
        prefix of the prompt in scope: (None, 0, 0) when none holds any."""
        return self._longest(self._matches(scope, prompt))

    def _matches(self, scope: str | None, prompt: list[int]) -> dict[int, int]:
        """How many prompt tokens each free slot's cache holds for this scope."""
        return {slot: self._reuse(slot, scope, prompt) for slot in self._free}

    def _pick(self, matches: dict[int, int]) -> int:
        """Of the free slots not pinned: the longest cached prefix in scope that is worth
        its slot, then the slot with the most running neighbours, then the slot whose
        cache is oldest (or empty). A prefix is worth its slot when it is at least half of
        what the slot holds: it then saves no fewer tokens than it throws away. A shorter
        one (a system prompt shared with a long conversation) is copied into another slot
        instead (the scheduler's allocate), and the conversation's next turn still finds
        its cache whole."""
        def rank(slot: int) -> tuple[int, int, int]:
            cached = self._free[slot]
            age = -1 if cached is None else cached.released_at
            worth = matches[slot] if cached is not None and 2 * matches[slot] >= len(cached.tokens) else 0
            return worth, self._running_neighbours(slot), -age

        return max((slot for slot in matches if slot not in self._pinned), key=rank)

    def _longest(self, matches: dict[int, int]) -> tuple[int | None, int, int]:
        best: tuple[int | None, int, int] = None, 0, 0
        for slot, n in matches.items():
            cached = self._free[slot]
            if cached is not None and n > best[1]:
                best = slot, n, len(cached.tokens)
        return best

    def cached_cells(self, slot: int) -> int:
        """Cells a free slot's cache holds (0 for a slot in use or empty)."""
        cached = self._free.get(slot)
        return 0 if cached is None else len(cached.tokens)

    def held_cells(self) -> int:
        """Cells the free slots' caches hold together."""
        return sum(len(c.tokens) for c in self._free.values() if c is not None)

    def evict_oldest(self, keep: int) -> int | None:
        """Empties the oldest cache of a free slot other than `keep` (and not pinned);
        returns that slot (whose KV the runner must then drop), or None when no such cache
        is left."""
        cached = [(c.released_at, slot) for slot, c in self._free.items()
                  if c is not None and slot != keep and slot not in self._pinned]
        if not cached:
            return None
        slot = min(cached)[1]
        self._free[slot] = None
        return slot

    def _reuse(self, slot: int, scope: str | None, prompt: list[int]) -> int:
        """How many prompt tokens a free slot's cache holds for this scope."""
        cached = self._free[slot]
        if scope is None or cached is None or cached.scope != scope:
            return 0
        return common_prefix(cached.tokens, prompt)

    def release(self, slot: int, scope: str | None, tokens_in_kv: list[int] | None) -> None:
        """Frees a slot; its KV is kept for reuse unless there is nothing safe to keep."""
        if scope is None or not tokens_in_kv:
            self._free[slot] = None
            return
        self._free[slot] = _Cached(scope, list(tokens_in_kv), next(self._clock))
