"""Routing and health of upstream replicas, without a network: rendezvous ranks that every
process agrees on, affinity that yields to a clearly busier replica, the other policies, and
ejection with a growing cool-down on an injected clock."""

import random
from collections import Counter

import pytest

from alize.upstream.health import HealthBook
from alize.upstream.router import Router, affinity_key, rendezvous

REPLICAS = ["gpu-a", "gpu-b", "gpu-c", "gpu-d"]


def test_rendezvous_is_stable_spread_and_minimally_disrupted():
    keys = [affinity_key(f"ws-{i % 50}", f"You are the assistant of team {i}. " * 40) for i in range(4000)]
    first = {k: rendezvous(k, REPLICAS)[0] for k in keys}
    assert first == {k: rendezvous(k, list(reversed(REPLICAS)))[0] for k in keys}  # order of the list: irrelevant
    spread = Counter(first.values())
    assert set(spread) == set(REPLICAS) and min(spread.values()) > 0.6 * max(spread.values())
    without_c = {k: rendezvous(k, [r for r in REPLICAS if r != "gpu-c"])[0] for k in keys}
    moved = [k for k in keys if without_c[k] != first[k]]
    assert moved and all(first[k] == "gpu-c" for k in moved)  # only gpu-c's keys move


def test_the_same_tenant_and_prompt_go_to_the_same_replica():
    router = Router(REPLICAS)
    key = affinity_key("team-a", "You are a helpful assistant for the legal team." * 30)
    chosen = {router.order(key)[0] for _ in range(20)}
    assert len(chosen) == 1
    other_tenant = affinity_key("team-b", "You are a helpful assistant for the legal team." * 30)
    tenants = {router.order(affinity_key(f"team-{i}", "same prompt"))[0] for i in range(40)}
    assert len(tenants) == 4 and router.order(other_tenant)  # the workspace is part of the key


def test_affinity_yields_to_a_clearly_less_busy_replica():
    router = Router(REPLICAS)
    key = affinity_key("team-a", "prompt")
    preferred = router.order(key)[0]
    idle = {r: 0 for r in REPLICAS}
    assert router.order(key, inflight={**idle, preferred: 3})[0] == preferred  # a little busier: stays
    busy = router.order(key, inflight={**{r: 2 for r in REPLICAS}, preferred: 6})
    assert busy[0] != preferred and set(busy) == set(REPLICAS)
    assert router.order(key, available=[r for r in REPLICAS if r != preferred])[0] != preferred


def test_least_inflight_and_round_robin():
    least = Router(REPLICAS, "least-inflight")
    assert least.order(b"k", inflight={"gpu-a": 5, "gpu-b": 1, "gpu-c": 3, "gpu-d": 2})[0] == "gpu-b"
    turns = Router(REPLICAS, "round-robin")
    firsts = [turns.order(b"same key")[0] for _ in range(8)]
    assert firsts == REPLICAS * 2
    assert Router(REPLICAS).order(b"k", available=[]) == []
    with pytest.raises(ValueError):
        Router(REPLICAS, "random")  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ejection_after_consecutive_failures_and_a_growing_cooldown():
    clock = Clock()
    book = HealthBook(["a", "b"], clock=clock, eject_after=3, first_cooldown_s=5, max_cooldown_s=30)
    book.failure("a", "refused")
    book.failure("a", "refused")
    book.success("a")  # not consecutive any more
    book.failure("a", "refused")
    book.failure("a", "refused")
    assert book.available() == ["a", "b"]
    book.failure("a", "refused")
    assert book.available() == ["b"] and book.state["a"].last_error == "refused"
    clock.now += 4
    book.checked("a", True)
    assert not book.is_up("a") and not book.check_due("a")  # its cool-down is not over
    clock.now += 1
    book.checked("a", False, "HTTP 503")  # still failing: a longer cool-down
    assert book.state["a"].cooldown_s == 10
    for cooldown in (20, 30, 30):
        clock.now = book.state["a"].ejected_until
        book.checked("a", False, "HTTP 503")
        assert book.state["a"].cooldown_s == cooldown
    clock.now = book.state["a"].ejected_until
    book.checked("a", True)
    assert book.is_up("a") and book.state["a"].cooldown_s == 5  # back, and forgiven
    book.checked("b", False, "timeout")  # a failed active check ejects at once
    assert book.available() == ["a"]


def test_every_replica_ejected_leaves_none():
    book = HealthBook(["a"], clock=Clock(), eject_after=1)
    book.failure("a", "x")
    assert book.available() == [] and Router(["a"]).order(b"k", book.available()) == []


def test_random_keys_follow_the_rank_when_loads_are_even():
    router = Router(REPLICAS)
    rng = random.Random(3)
    for _ in range(200):
        key = rng.randbytes(16)
        assert router.order(key, inflight={r: 7 for r in REPLICAS}) == rendezvous(key, REPLICAS)
