"""Limit counters, in process and in the real Redis: atomic check-and-book, sliding
minute windows, month totals seeded once, settlement."""

import asyncio
import uuid

import pytest

from alize.store.counters import Adjustment, Check, MemoryCounters
from alize.store.redis_counters import RedisCounters
from tests.databases import REDIS_URL, redis_url


def _name(kind: str) -> str:
    return f"test:{uuid.uuid4().hex}:{kind}"


def run(coro):
    return asyncio.run(coro)


async def _backends(kind: str, n: int = 1, prefix: str = "alize-test:"):
    if kind == "memory":
        shared = MemoryCounters()
        return [shared] * n
    return [RedisCounters(redis_url(), prefix=prefix) for _ in range(n)]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_concurrent_reservations_never_exceed_the_limit(kind):
    async def main():
        replicas = await _backends(kind, 2)
        rpm, tpm = _name("rpm"), _name("tpm")
        checks = [Check(rpm, "minute", 1, 10), Check(tpm, "minute", 30, 1000)]
        verdicts = await asyncio.gather(*(replicas[i % 2].reserve(checks) for i in range(50)))
        for r in set(replicas):
            await r.close()
        return verdicts

    verdicts = run(main())
    granted = [v for v in verdicts if v.ok]
    assert len(granted) == 10
    denied = [v for v in verdicts if not v.ok]
    assert all(v.denied == 0 and 1 <= v.retry_after <= 61 for v in denied)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_denied_request_books_nothing(kind):
    async def main():
        (c,) = await _backends(kind)
        a, b = _name("a"), _name("b")
        assert (await c.reserve([Check(a, "minute", 5, 100), Check(b, "minute", 5, 8)])).ok
        denied = await c.reserve([Check(a, "minute", 5, 100), Check(b, "minute", 5, 8)])
        assert not denied.ok and denied.denied == 1 and denied.used == [5, 5]
        again = await c.reserve([Check(a, "minute", 1, 100)])
        assert again.ok and again.used == [5]  # the denied request added nothing to a
        too_big = await c.reserve([Check(a, "minute", 101, 100)])
        assert not too_big.ok and too_big.retry_after == 60
        await c.close()

    run(main())


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_month_counters_are_seeded_then_settled(kind):
    async def main():
        (c,) = await _backends(kind)
        month = _name("tokens:2026-11")
        check = [Check(month, "month", 100, 1000)]
        first = await c.reserve(check)
        assert not first.ok and first.unseeded == [0]
        await c.seed(month, 850)
        await c.seed(month, 0)  # a second seed (another replica) changes nothing
        ok = await c.reserve(check)
        assert ok.ok and ok.used == [850]
        assert not (await c.reserve(check)).ok  # 950 + 100 > 1000
        await c.adjust([Adjustment(month, "month", ok.stamp, -60)])  # used 40 of the 100 reserved
        assert (await c.reserve(check)).ok  # 890 + 100 <= 1000
        minute = _name("tpm")
        booked = await c.reserve([Check(minute, "minute", 50, 60)])
        await c.adjust([Adjustment(minute, "minute", booked.stamp, -45)])
        assert (await c.reserve([Check(minute, "minute", 55, 60)])).ok
        await c.close()

    run(main())


def _redis_value(name: str, prefix: str) -> int:
    import redis

    with redis.Redis.from_url(REDIS_URL) as r:
        value = r.get(prefix + name)
    return int(value) if value is not None else -1


def _prefix() -> str:
    """A namespace of its own: the holders of other tests (and runs) stay out of it."""
    return f"alize-test-{uuid.uuid4().hex[:8]}:"


def test_a_dead_replicas_reservations_are_given_back_and_its_late_settlements_add_only_use():
    async def main():
        prefix = _prefix()
        a, b = await _backends("redis", 2, prefix)
        month = _name("nano:2026-12")
        await a.seed(month, 1000)
        held = await a.reserve([Check(month, "month", 300, 10_000)])
        kept = await a.reserve([Check(month, "month", 50, 10_000)])
        assert held.ok and held.holder and _redis_value(month, prefix) == 1350
        assert await b.renew() == 0  # a is alive: nothing to give back
        # a stops renewing (kill -9): its lease lapses, and b gives its reservations back
        await b._redis.delete(f"{prefix}lease:{held.holder}")
        assert await b.renew() == 1
        assert _redis_value(month, prefix) == 1000
        # a's request was in fact still running and settles late: only what it used is added
        await a.adjust([Adjustment(month, "month", held.stamp, 40 - 300, 300)], held.holder)
        assert _redis_value(month, prefix) == 1040
        await a.adjust([Adjustment(month, "month", kept.stamp, 10 - 50, 50)], kept.holder)
        assert _redis_value(month, prefix) == 1050
        # a's next reservation takes a new lease
        again = await a.reserve([Check(month, "month", 5, 10_000)])
        assert again.ok and again.holder != held.holder
        await a.close()  # a clean shutdown gives back what is still reserved
        assert _redis_value(month, prefix) == 1050
        await b.close()

    run(main())


def test_settling_releases_the_reservation_and_reconcile_counts_live_ones():
    async def main():
        prefix = _prefix()
        (c,) = await _backends("redis", 1, prefix)
        month = _name("tokens:2026-12")
        await c.seed(month, 0)
        first = await c.reserve([Check(month, "month", 100, 1000)])
        second = await c.reserve([Check(month, "month", 70, 1000)])
        await c.adjust([Adjustment(month, "month", first.stamp, 30 - 100, 100)], first.holder)
        assert _redis_value(month, prefix) == 100  # 30 used + 70 still reserved
        await c.reconcile(month, 500)  # the usage table says 500: plus the 70 in flight
        assert _redis_value(month, prefix) == 570
        await c.adjust([Adjustment(month, "month", second.stamp, 0 - 70, 70)], second.holder)
        assert _redis_value(month, prefix) == 500
        assert month in await c.month_counters("2026-12")
        await c.close()

    run(main())
