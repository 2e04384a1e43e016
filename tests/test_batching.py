"""Continuous batching: many requests share one engine without changing their answers."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.server import start_server
from tests.sse import read_events

TOPICS = ["cats", "the sea", "Paris", "bread", "rain", "music", "trains", "snow", "coffee", "stars",
          "gardens", "chess", "rivers", "bees", "clocks", "maps"]


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory):
    # buffers of their own (not left to auto, which pools on a machine with less memory)
    srv = start_server(tmp_path_factory.mktemp("batch"), env={
        "ALIZE_PARALLEL": "16", "ALIZE_QUEUE_SIZE": "64", "ALIZE_KV_LAYOUT": "per-sequence"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory):
    """One KV pool shared by the sequences (ALIZE_KV_LAYOUT=pool): llama.cpp computes a batch's
    attention together there, and greedy answers may part in late tokens (docs/tuning.md)."""
    srv = start_server(tmp_path_factory.mktemp("pool"), env={"ALIZE_PARALLEL": "16", "ALIZE_KV_LAYOUT": "pool"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tiny_queue_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("queue"), env={
        "ALIZE_PARALLEL": "1", "ALIZE_QUEUE_SIZE": "1", "ALIZE_QUEUE_TIMEOUT": "1.5"})
    yield srv
    srv.stop()


def _greedy(client: httpx.Client, topic: str) -> dict:
    r = client.post("/v1/chat/completions", json={
        "model": "mistral-small-latest", "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": f"Write one sentence about {topic}."}]})
    assert r.status_code == 200, r.text
    return r.json()


def _alone_and_batched(server) -> tuple[list[dict], list[dict]]:
    with server.client() as client:
        alone = [_greedy(client, t) for t in TOPICS]
        with ThreadPoolExecutor(len(TOPICS)) as pool:
            batched = list(pool.map(lambda t: _greedy(client, t), TOPICS))
    return alone, batched


def test_greedy_output_is_the_same_alone_and_batched(batch_server):
    alone, batched = _alone_and_batched(batch_server)
    texts = [r["choices"][0]["message"]["content"] for r in alone]
    assert [r["choices"][0]["message"]["content"] for r in batched] == texts
    assert len(set(texts)) > len(TOPICS) // 2  # distinct prompts, distinct answers


def test_batched_answers_in_the_pool_are_whole(pool_server):
    """In a KV pool, 16 requests batched get whole answers: each ends at its own
    end or at its 16 tokens, never cut, with the prompt counted as alone. (Not always alone's
    words: 7 of 16 were, one run; docs/tuning.md.)"""
    alone, batched = _alone_and_batched(pool_server)
    for one, many in zip(alone, batched, strict=True):
        assert one["usage"]["prompt_tokens"] == many["usage"]["prompt_tokens"]
        reason, tokens = many["choices"][0]["finish_reason"], many["usage"]["completion_tokens"]
        assert (reason, tokens) == ("length", 16) or (reason == "stop" and 0 < tokens <= 16)
        assert many["choices"][0]["message"]["content"].strip()


def _stream(server, i: int) -> tuple[str, dict, str]:
    body = {"model": "mistral-small-latest", "stream": True, "max_tokens": 12, "min_tokens": 12,
            "messages": [{"role": "user", "content": f"Count from {i} upwards."}]}
    with server.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        chunks, is_done = read_events(r)
    assert is_done
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, chunks[-1]["usage"], chunks[-1]["choices"][0]["finish_reason"]


def test_32_concurrent_streams_complete_without_leaks(batch_server):
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: _stream(batch_server, i), range(32)))
    for text, usage, finish in results:
        assert text and finish == "length"
        assert usage["completion_tokens"] == 12
    # every slot is free again, and a request can still use (nearly) the whole context
    long_prompt = "one two three four five six seven eight nine ten " * 600  # ~6,000 tokens
    with batch_server.client() as client:
        client.timeout = httpx.Timeout(600)
        r = client.post("/v1/chat/completions", json={
            "model": "mistral-small-latest", "max_tokens": 4,
            "messages": [{"role": "user", "content": long_prompt}]})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] > 5000
    metrics = httpx.get(batch_server.url + "/metrics", headers={"Authorization": f"Bearer {batch_server.admin_key}"})
    assert 'alize_requests_running{model="smollm2-135m-instruct"} 0.0' in metrics.text


def _long_request(server) -> httpx.Response:
    with server.client() as client:
        return client.post("/v1/chat/completions", json={
            "model": "mistral-small-latest", "max_tokens": 600, "min_tokens": 600,
            "messages": [{"role": "user", "content": "Write a long story."}]})


def test_queue_full_is_429_with_retry_after_and_queue_timeout_is_503(tiny_queue_server):
    # capacity = 1 running + 1 waiting: of 4 simultaneous requests, 2 are refused at once
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: _long_request(tiny_queue_server), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(429) == 2, statuses
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["object"] == "error" and r.json()["type"] == "queue_full"
    # the one that waited longer than ALIZE_QUEUE_TIMEOUT (1.5 s) got a 503, the other ran
    assert statuses.count(200) == 1 and statuses.count(503) == 1, statuses
