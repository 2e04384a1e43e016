"""Which replica of a model's backends answers a request.

- prefix-affinity (the default): rendezvous hashing of an affinity key (the workspace and
  the start of the prompt) ranks the replicas, so that a team's system prompt stays warm in
  one engine's prefix cache, and every Alizé replica ranks them alike without sharing any
  state; when the preferred replica has clearly more requests in flight than the least busy
  one, the least busy answers instead.
- least-inflight: the replica with the fewest requests in flight (ties by rendezvous rank).
- round-robin: each in turn.

The order returned is also the failover order: a request that fails before its first byte
moves to the next replica in it."""

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Literal

Policy = Literal["prefix-affinity", "least-inflight", "round-robin"]
POLICIES: tuple[Policy, ...] = ("prefix-affinity", "least-inflight", "round-robin")

# "Clearly more": the preferred replica is passed over when it has this many more requests in
# flight than the least busy one, and at least twice as many.
BUSY_MARGIN = 4


def score(key: bytes, replica: str) -> int:
    """A replica's stable rendezvous score for a key (the same in every process)."""
    digest = hashlib.blake2b(key + b"\x00" + replica.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous(key: bytes, replicas: Sequence[str]) -> list[str]:
    """The replicas ranked for a key, best first. Removing one replica moves only the keys
    that ranked it first."""
    return sorted(replicas, key=lambda r: (-score(key, r), r))


def affinity_key(workspace_id: str, prompt_start: str, length: int = 2048) -> bytes:
    """What ties a request to a replica: its workspace and the start of its prompt."""
    return workspace_id.encode() + b"\x00" + prompt_start[:length].encode("utf-8", "surrogatepass")


class Router:
    def __init__(self, replicas: Sequence[str], policy: Policy = "prefix-affinity", busy_margin: int = BUSY_MARGIN):
        if not replicas:
            raise ValueError("a router needs at least one replica")
        if policy not in POLICIES:
            raise ValueError(f"routing must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.replicas = list(replicas)
        self.policy = policy
        self.busy_margin = busy_margin
        self._turn = itertools.count()

    def order(self, key: bytes, available: Sequence[str] | None = None,
              inflight: Mapping[str, int] | None = None) -> list[str]:
        """The available replicas in the order to try them (first: the one to use)."""
        pool = [r for r in self.replicas if available is None or r in available]
        if not pool:
            return []
        load = inflight or {}
        ranked = rendezvous(key, pool)
        if self.policy == "round-robin":
            start = next(self._turn) % len(pool)
            return pool[start:] + pool[:start]
        if self.policy == "least-inflight":
            return sorted(ranked, key=lambda r: load.get(r, 0))  # stable: ties keep the rendezvous rank
        preferred, idlest = ranked[0], min(ranked, key=lambda r: load.get(r, 0))
        busy, least = load.get(preferred, 0), load.get(idlest, 0)
        if busy - least >= self.busy_margin and busy >= 2 * least:
            return [idlest, *(r for r in ranked if r != idlest)]
        return ranked
