"""Limits that hold under concurrency, on one server and across replicas sharing Redis."""

import asyncio
from collections.abc import Iterator

import pytest

from tests.databases import postgres_database, redis_url
from tests.platform_helpers import EOS_BAN, create_key, post_many, sqlite_url, usage_rows
from tests.server import Server, alize, start_server

CHAT = {"model": "mistral-tiny", "messages": [{"role": "user", "content": "Count to ten."}],
        "max_tokens": 4, "temperature": 0, "logit_bias": EOS_BAN}


def test_budget_race_never_overspends(server):
    """50 simultaneous requests against a budget that covers about 10."""
    probe = create_key(server)
    with server.client(probe["secret"]) as client:
        first = client.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == 200
    usage = first.json()["usage"]
    # mistral-tiny: 0.00015 EUR / 1k input, 0.0002 EUR / 1k output tokens: 150 and 200 nano-euros a token
    cost = usage["prompt_tokens"] * 150 + usage["completion_tokens"] * 200
    budget_nano = int(cost * 10.5)
    key = create_key(server, budget_eur=budget_nano / 1e9)
    responses = asyncio.run(post_many([(server.url, key["secret"])], "/v1/chat/completions", [CHAT] * 50))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    rejected = [r for r in responses if r.status_code == 429]
    assert rejected and all("budget" in r.json()["message"] and r.json()["object"] == "error" for r in rejected)
    assert all(int(r.headers["retry-after"]) > 0 for r in rejected)
    rows = usage_rows(sqlite_url(server), key_id=key["id"])
    spent = sum(row.cost_nano for row in rows)
    assert spent <= budget_nano + cost
    assert statuses.count(200) == 10  # every request costs the same: exactly 10 fit
    assert len(rows) == 50 and sum(row.status == 429 for row in rows) == 40


def test_rpm_headers_and_retry_after(server):
    key = create_key(server, rpm=3)
    with server.client(key["secret"]) as client:
        ok = [client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
        over = client.post("/v1/chat/completions", json=CHAT)
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert ok[0].headers["x-ratelimit-limit-requests"] == "3"
    assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["2", "1", "0"]
    assert over.status_code == 429 and "requests per minute" in over.json()["message"]
    assert 1 <= int(over.headers["retry-after"]) <= 61
    assert over.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[tuple[str, Server, Server]]:
    """Two servers sharing one PostgreSQL database and one Redis."""
    with postgres_database() as url:
        env = {"ALIZE_DATABASE_URL": url, "ALIZE_REDIS_URL": redis_url(), "ALIZE_PARALLEL": "4"}
        a = start_server(tmp_path_factory.mktemp("replica-a"), env=env)
        try:
            b = start_server(tmp_path_factory.mktemp("replica-b"), env=env, create_keys=False)
        except Exception:
            a.stop()
            raise
        b.key, b.admin_key = a.key, a.admin_key
        yield url, a, b
        a.stop()
        b.stop()


def test_rpm_holds_across_replicas(replicas):
    url, a, b = replicas
    key = create_key(a, rpm=40)
    body = {**CHAT, "max_tokens": 1}
    targets = [(a.url, key["secret"]), (b.url, key["secret"])]
    responses = asyncio.run(post_many(targets, "/v1/chat/completions", [body] * 100, concurrency=16))
    granted = [r for r in responses if r.status_code == 200]
    assert {r.status_code for r in responses} == {200, 429}
    assert len(granted) == 40  # within 1% of 40 is exactly 40
    assert {r.url.port for r in granted} == {int(a.url.rsplit(":", 1)[1]), int(b.url.rsplit(":", 1)[1])}


def test_tpm_holds_across_replicas(replicas):
    url, a, b = replicas
    key = create_key(a, tpm=800)
    body = {"model": "mistral-embed", "input": "hello world"}
    with a.client(key["secret"]) as client:
        tokens = client.post("/v1/embeddings", json=body).json()["usage"]["prompt_tokens"]
    targets = [(a.url, key["secret"]), (b.url, key["secret"])]
    responses = asyncio.run(post_many(targets, "/v1/embeddings", [body] * (1000 // tokens), concurrency=16))
    granted = sum(r.status_code == 200 for r in responses) + 1
    used = granted * tokens
    assert 800 * 0.99 - tokens <= used <= 800, (granted, tokens)
    assert all("tokens per minute" in r.json()["message"] for r in responses if r.status_code == 429)
    rows = usage_rows(url, key_id=key["id"], status=200)
    assert sum(r.prompt_tokens for r in rows) == used


def test_revoked_key_is_refused_on_every_replica(replicas):
    url, a, b = replicas
    key = create_key(a)
    body = {**CHAT, "max_tokens": 1}
    for server in (a, b):
        with server.client(key["secret"]) as client:
            assert client.post("/v1/chat/completions", json=body).status_code == 200
    alize("keys", "revoke", key["id"], "--database-url", url)
    for server in (a, b):
        with server.client(key["secret"]) as client:
            r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 401 and "revoked" in r.json()["message"]
