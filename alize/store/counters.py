"""Counters behind the rate limits, in process (one server) or in Redis (several replicas,
store/redis_counters.py).

Both backends do the same thing atomically: check every limit of a request, and only if
all of them have room, add the request's amounts to every counter. A minute counter is a
sliding window of one-second buckets (the current second and the 60 before it, so that
no 60-second span ever holds more than the limit); a month counter is a plain total,
seeded from the usage table the first time it is needed.

A month counter also holds the worst case of the requests in flight. In Redis those
reservations outlive a replica that dies, so each is recorded under its replica's lease
(a holder): a live replica renews it, and once it lapses any replica gives the holder's
reservations back (reclaim). In process they die with the process, and the counters are
seeded again from the usage table at the next start."""

import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

WINDOW_S = 60
Window = Literal["minute", "month"]


@dataclass(frozen=True)
class Check:
    name: str  # counter name; month counters carry the month in it
    window: Window
    amount: int
    limit: int


@dataclass
class Verdict:
    ok: bool
    stamp: int = 0  # the second the amounts were booked under (to settle them later)
    used: list[int] = field(default_factory=list)  # per check, before this request
    denied: int | None = None  # index of the check that had no room
    retry_after: int = 0
    unseeded: list[int] = field(default_factory=list)  # month counters to seed first
    holder: str | None = None  # whose ledger holds the reservation (Redis): settle it under it


@dataclass(frozen=True)
class Adjustment:
    name: str
    window: Window
    stamp: int
    delta: int  # what to add: the amount used minus the amount reserved
    reserved: int = 0  # the reservation this settles (0: a plain addition, nothing reserved)


class Counters(Protocol):
    async def reserve(self, checks: list[Check]) -> Verdict: ...
    async def seed(self, name: str, value: int) -> None: ...
    async def adjust(self, adjustments: list[Adjustment], holder: str | None = None) -> None: ...
    async def renew(self) -> int:
        """Renews this process's lease and gives back the reservations of lapsed ones;
        returns how many holders were reclaimed."""
        ...
    async def reconcile(self, name: str, settled: int) -> None:
        """Sets a month counter to what the usage table holds plus the reservations in flight."""
        ...
    async def month_counters(self, month: str) -> list[str]:
        """The names of the month's counters that are shared (and so may need reconciling)."""
        ...
    async def close(self) -> None:
        """Gives back what this process still holds (a clean shutdown), then closes."""
        ...
    async def ping(self) -> None:
        """Raises unless the counters' store answers (readiness)."""
        ...


def _retry_after(buckets: list[tuple[int, int]], need: int, now: int) -> int:
    """Seconds until enough old buckets leave the window to free `need`."""
    freed = 0
    for stamp, value in sorted(buckets):
        freed += value
        if freed >= need:
            return max(1, stamp + WINDOW_S + 1 - now)
    return WINDOW_S


class MemoryCounters:
    """One process. Methods run on the event loop without awaiting, so each is atomic."""

    def __init__(self) -> None:
        self._minute: dict[str, dict[int, int]] = {}
        self._month: dict[str, int] = {}

    def _window(self, name: str, now: int) -> dict[int, int]:
        buckets = self._minute.setdefault(name, {})
        for stamp in [s for s in buckets if s < now - WINDOW_S]:
            del buckets[stamp]
        return buckets

    async def reserve(self, checks: list[Check]) -> Verdict:
        now = int(time.time())
        unseeded = [i for i, c in enumerate(checks) if c.window == "month" and c.name not in self._month]
        if unseeded:
            return Verdict(False, unseeded=unseeded)
        used = []
        for i, check in enumerate(checks):
            if check.window == "month":
                current = self._month[check.name]
            else:
                buckets = self._window(check.name, now)
                current = sum(buckets.values())
            used.append(current)
            if current + check.amount > check.limit:
                retry = 0
                if check.window == "minute":
                    need = current + check.amount - check.limit
                    retry = _retry_after(list(buckets.items()), need, now) if check.amount <= check.limit else WINDOW_S
                return Verdict(False, now, used, denied=i, retry_after=retry)
        for check in checks:
            if check.window == "month":
                self._month[check.name] += check.amount
            else:
                buckets = self._minute[check.name]
                buckets[now] = buckets.get(now, 0) + check.amount
        return Verdict(True, now, used)

    async def seed(self, name: str, value: int) -> None:
        self._month.setdefault(name, value)

    async def adjust(self, adjustments: list[Adjustment], holder: str | None = None) -> None:
        for a in adjustments:
            if a.window == "month":
                if a.name in self._month:
                    self._month[a.name] += a.delta
            elif a.stamp in self._minute.get(a.name, {}):
                self._minute[a.name][a.stamp] += a.delta

    async def renew(self) -> int:
        return 0  # reservations live and die with this process

    async def reconcile(self, name: str, settled: int) -> None:
        """In process, a counter is seeded from the usage table when first needed."""

    async def month_counters(self, month: str) -> list[str]:
        return []  # none shared: each start seeds them anew

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        pass
