"""Limits per key and per workspace: requests and tokens per minute, tokens and euros per month.

A request reserves its worst case (prompt + max_tokens, and what that would cost) at
admission, atomically against every limit, and settles the real figures when it ends:
concurrent requests can never spend past a budget, only leave part of it unused until
they settle."""

import asyncio
import calendar
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alize.errors import RateLimited
from alize.store import accounts
from alize.store.accounts import KeyInfo, Limits
from alize.store.counters import Adjustment, Check, Counters
from alize.store.db import Database
from alize.store.usage import month_totals

UNLIMITED = 2**62  # month totals are always counted, so that a limit set later starts right


@dataclass
class Reservation:
    checks: list[Check]
    stamp: int
    tokens: int
    nano: int
    headers: dict[str, str] = field(default_factory=dict)
    holder: str | None = None  # the counters' ledger it is recorded in (Redis)


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def seconds_to_next_month(moment: datetime) -> int:
    start = month_start(moment)
    days = calendar.monthrange(start.year, start.month)[1]
    return max(1, int((start.timestamp() + days * 86400) - moment.timestamp()))


def euros(nano: int) -> str:
    return f"{nano / 1e9:.6f}".rstrip("0").rstrip(".") + " EUR"


@dataclass(frozen=True)
class _Scope:
    kind: str  # "key" | "workspace"
    id: str
    name: str
    limits: Limits

    def label(self) -> str:
        return f"{self.kind} {self.name!r}"


def _scopes(key: KeyInfo) -> list[_Scope]:
    return [_Scope("key", key.id, key.name, key.limits),
            _Scope("workspace", key.workspace.id, key.workspace.name, key.workspace.limits)]


def _checks(scopes: list[_Scope], month: str, tokens: int, nano: int) -> list[tuple[_Scope, str, Check]]:
    out = []
    for s in scopes:
        base = f"{s.kind}:{s.id}"
        if s.limits.rpm is not None:
            out.append((s, "requests", Check(f"{base}:rpm", "minute", 1, s.limits.rpm)))
        if s.limits.tpm is not None:
            out.append((s, "tokens", Check(f"{base}:tpm", "minute", tokens, s.limits.tpm)))
        out.append((s, "tokens-month", Check(f"{base}:tokens:{month}", "month", tokens,
                                             _or_unlimited(s.limits.monthly_tokens))))
        out.append((s, "budget-month", Check(f"{base}:nano:{month}", "month", nano,
                                             _or_unlimited(s.limits.monthly_budget_nano))))
    return out


def _or_unlimited(limit: int | None) -> int:
    return UNLIMITED if limit is None else limit


def _denial_message(scope: _Scope, what: str, check: Check, used: int, retry_after: int) -> str:
    who = scope.label()
    if what == "requests":
        return f"Rate limit exceeded: {check.limit} requests per minute for {who}; retry in {retry_after} s"
    if what == "tokens":
        if check.amount > check.limit:
            return (f"Rate limit exceeded: this request may use {check.amount} tokens (prompt + max_tokens), "
                    f"more than the {check.limit} tokens per minute allowed for {who}")
        return (f"Rate limit exceeded: {check.limit} tokens per minute for {who} ({used} in use, this request "
                f"may use {check.amount}); retry in {retry_after} s")
    if what == "tokens-month":
        return (f"Monthly token quota exhausted for {who}: {used} of {check.limit} tokens used, this request "
                f"may use {check.amount} (prompt + max_tokens)")
    return (f"Monthly budget exhausted for {who}: {euros(used)} of {euros(check.limit)} spent, this "
            f"request may cost up to {euros(check.amount)}")


LIMIT_LABELS = {"requests": "rpm", "tokens": "tpm", "tokens-month": "monthly_tokens",
                "budget-month": "monthly_budget"}


class Limiter:
    def __init__(self, counters: Counters, db: Database, refused: Callable[[str], None] | None = None):
        self.counters = counters
        self.db = db
        self.refused = refused  # told the limit ("key_rpm", "workspace_monthly_budget"...) of each refusal

    async def reserve(self, key: KeyInfo, tokens: int, nano: int) -> Reservation:
        """Books the worst case against every limit of the key and its workspace, or
        raises RateLimited (429) naming the limit, with Retry-After."""
        now = datetime.now(UTC)
        month = now.strftime("%Y-%m")
        labelled = _checks(_scopes(key), month, tokens, nano)
        checks = [c for _, _, c in labelled]
        for _attempt in range(3):
            verdict = await self.counters.reserve(checks)
            if not verdict.unseeded:
                break
            for i in verdict.unseeded:
                await self._seed(labelled[i][0], checks[i], month_start(now))
        if verdict.unseeded:
            raise RuntimeError("limit counters could not be seeded")
        if not verdict.ok:
            assert verdict.denied is not None
            scope, what, check = labelled[verdict.denied]
            if self.refused is not None:
                self.refused(f"{scope.kind}_{LIMIT_LABELS[what]}")
            retry = verdict.retry_after if check.window == "minute" else seconds_to_next_month(now)
            headers = _headers(labelled, verdict.used, now, denied=True)
            headers["Retry-After"] = str(retry)
            raise RateLimited(_denial_message(scope, what, check, verdict.used[verdict.denied], retry), headers)
        return Reservation(checks, verdict.stamp, tokens, nano, _headers(labelled, verdict.used, now),
                           verdict.holder)

    async def _seed(self, scope: _Scope, check: Check, since: datetime) -> None:
        tokens, nano = await asyncio.to_thread(month_totals, self.db, scope.kind, scope.id, since)
        await self.counters.seed(check.name, tokens if ":tokens:" in check.name else nano)

    async def settle(self, reservation: Reservation, tokens: int, nano: int) -> None:
        """Replaces the reserved worst case by what the request really used."""
        adjustments = []
        for check in reservation.checks:
            if check.name.endswith(":rpm"):
                continue
            is_money = ":nano:" in check.name
            reserved = reservation.nano if is_money else reservation.tokens
            delta = (nano if is_money else tokens) - reserved
            if delta or (check.window == "month" and reserved):
                adjustments.append(Adjustment(check.name, check.window, reservation.stamp, delta,
                                              reserved if check.window == "month" else 0))
        await self.counters.adjust(adjustments, reservation.holder)

    async def add(self, key_id: str, workspace_id: str, moment: datetime, tokens: int, nano: int) -> None:
        """Adds usage recorded outside a reservation (a stream billed after its server died)
        to the month counters of its key and workspace."""
        month = moment.astimezone(UTC).strftime("%Y-%m")
        await self.counters.adjust([
            Adjustment(f"{kind}:{scope_id}:{what}:{month}", "month", 0, amount)
            for kind, scope_id in (("key", key_id), ("workspace", workspace_id))
            for what, amount in (("tokens", tokens), ("nano", nano)) if amount])

    async def reconcile(self, now: datetime | None = None) -> list[tuple[str, int]]:
        """Sets this month's shared counters (Redis) to the usage table's totals plus the
        reservations in flight; returns (counter, total) for each. In process there is
        nothing to do: counters are seeded from the usage table at each start."""
        now = now or datetime.now(UTC)
        month, since = now.strftime("%Y-%m"), month_start(now)
        out = []
        for name in await self.counters.month_counters(month):
            kind, scope_id, what, _ = name.split(":", 3)
            if not await asyncio.to_thread(accounts.exists, self.db, kind, scope_id):
                continue  # another installation's, sharing the Redis: not ours to set
            tokens, nano = await asyncio.to_thread(month_totals, self.db, kind, scope_id, since)
            await self.counters.reconcile(name, nano if what == "nano" else tokens)
            out.append((name, nano if what == "nano" else tokens))
        return out


def _headers(labelled: list[tuple[_Scope, str, Check]], used: list[int], now: datetime,
             denied: bool = False) -> dict[str, str]:
    """x-ratelimit-{limit,remaining,reset}-{requests,tokens,...}: the tightest limit of each kind."""
    tightest: dict[str, tuple[int, int]] = {}
    for (_, what, check), before in zip(labelled, used, strict=False):
        if check.limit >= UNLIMITED:
            continue
        remaining = max(0, check.limit - before - (0 if denied else check.amount))
        if what not in tightest or remaining < tightest[what][1]:
            tightest[what] = (check.limit, remaining)
    headers = {}
    for what, (limit, remaining) in tightest.items():
        show = (lambda v: f"{v / 1e9:.6f}") if what == "budget-month" else str  # euros, not nano-euros
        headers[f"x-ratelimit-limit-{what}"] = show(limit)
        headers[f"x-ratelimit-remaining-{what}"] = show(remaining)
        reset = 61 if what in ("requests", "tokens") else seconds_to_next_month(now)
        headers[f"x-ratelimit-reset-{what}"] = f"{reset}s"
    return headers
