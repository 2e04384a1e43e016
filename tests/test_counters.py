"""Limit counters, in process and in the real Redis: atomic check-and-book, sliding
minute windows, month totals seeded once, settlement."""

import asyncio
import uuid

import pytest

from alize.store.counters import Adjustment, Check, MemoryCounters, RedisCounters
from tests.databases import REDIS_URL


def _name(kind: str) -> str:
    return f"test:{uuid.uuid4().hex}:{kind}"


def run(coro):
    return asyncio.run(coro)


async def _backends(kind: str, n: int = 1):
    if kind == "memory":
        shared = MemoryCounters()
        return [shared] * n
    return [RedisCounters(REDIS_URL, prefix="alize-test:") for _ in range(n)]


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
