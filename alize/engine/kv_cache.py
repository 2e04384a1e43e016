"""KV slots and the prefix cache.

Each running sequence owns one slot (a llama.cpp sequence id with its own KV buffer).
When a sequence ends its KV stays in the slot, labelled with the tokens it holds and
the scope (by default the API key) that produced them. A new request takes the free
slot whose cached tokens share the longest prefix with its prompt *within the same
scope*, so only the rest of the prompt is computed. Another scope never sees it."""

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
        self._free: dict[int, _Cached | None] = dict.fromkeys(range(num_slots))
        self._clock = itertools.count()

    def can_allocate(self) -> bool:
        return bool(self._free)

    def allocate(self, scope: str | None, prompt: list[int]) -> tuple[int, int]:
        """Takes a free slot; returns it and how many prompt tokens its KV already holds.
        At least one prompt token is always left to compute (its logits are needed)."""
        best_slot, best_len = None, 0
        if scope is not None:
            for slot, cached in self._free.items():
                if cached is not None and cached.scope == scope:
                    n = common_prefix(cached.tokens, prompt)
                    if n > best_len:
                        best_slot, best_len = slot, n
        if best_slot is None:  # no reuse: take the slot whose cache is oldest (or empty)
            best_slot = min(self._free, key=lambda s: -1 if self._free[s] is None else self._free[s].released_at)
        del self._free[best_slot]
        return best_slot, min(best_len, len(prompt) - 1)

    def release(self, slot: int, scope: str | None, tokens_in_kv: list[int] | None) -> None:
        """Frees a slot; its KV is kept for reuse unless there is nothing safe to keep."""
        keep = scope is not None and bool(tokens_in_kv)
        self._free[slot] = _Cached(scope, list(tokens_in_kv), next(self._clock)) if keep else None
