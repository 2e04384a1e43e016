"""The KV pool (ALIZE_KV_CACHE_MB): sequences share one KV cache and are admitted by what
they may use, prompt + max_tokens; free slots' cached prefixes give way, oldest first; a
request that can never fit is refused with a clear 400. Scheduler and engine over the
scripted FakeRunner (which fails a decode past the pool, as llama.cpp does), then a real
server started with a small pool."""

import asyncio
import threading

import httpx

from alize.engine.client import AsyncEngine
from alize.engine.core import EngineCore
from alize.engine.params import FinishReason, GenerationRequest, SamplingParams
from alize.engine.scheduler import Scheduler
from tests.fake_runner import WORDS, FakeRunner
from tests.server import Server, start_server
from tests.test_core_fake import collect
from tests.test_scheduler import decode_once, sequence


def test_a_sequence_waits_until_what_it_may_use_fits():
    scheduler = Scheduler(max_sequences=4, token_budget=512, kv_pool=100)
    scheduler.add(sequence("a", prompt_len=40))  # each may use 40 + 8 cells
    scheduler.add(sequence("b", prompt_len=40))
    scheduler.add(sequence("c", prompt_len=40))
    scheduler.add(sequence("d", prompt_len=2))  # would fit, but does not overtake c
    decode_once(scheduler)
    assert [s.request_id for s in scheduler.running] == ["a", "b"]
    assert [s.request_id for s in scheduler.waiting] == ["c", "d"]
    scheduler.deallocate(scheduler.running[0])
    decode_once(scheduler)
    assert [s.request_id for s in scheduler.running] == ["b", "c"]  # 48 + 48 + 10 > 100: d waits
    assert scheduler.cleared == []  # no scope, no cached prefix to give way


def test_cached_prefixes_give_way_oldest_first():
    scheduler = Scheduler(max_sequences=4, token_budget=512, kv_pool=120)
    for name, scope in (("old", "k1"), ("new", "k2")):
        scheduler.add(sequence(name, prompt_len=30, scope=scope))
        decode_once(scheduler)
        scheduler.deallocate(scheduler.running[0])  # its slot keeps 31 cells for its scope
    assert scheduler.slots.held_cells() == 60
    scheduler.add(sequence("big", prompt_len=70, scope="k3"))  # may use 78: 60 + 78 > 120
    decode_once(scheduler)
    assert [s.request_id for s in scheduler.running] == ["big"]
    assert len(scheduler.cleared) == 1 and scheduler.slots.held_cells() == 30  # the oldest gave way, once
    kept = next(slot for slot in range(4) if scheduler.slots.cached_cells(slot))
    assert scheduler.slots.choose("k2", list(range(100, 130)))[0] == kept  # the newer one is still there


def test_the_engine_never_decodes_past_the_pool_and_finishes_every_request():
    runner = FakeRunner(lambda prompt: [WORDS.index(" Bonjour")] * 20, kv_pool_cells=64)
    core = EngineCore(runner, Scheduler(4, 64, queue_timeout_s=5, kv_pool=64), "fake")
    core.start()
    client = AsyncEngine(core, 8)
    requests = [GenerationRequest(f"r{i}", [1, *range(2, 12), 40 + i], SamplingParams(max_tokens=20), cache_scope="k")
                for i in range(5)]
    try:
        texts, finals = asyncio.run(asyncio.wait_for(collect(client, *requests), 10))
    finally:
        core.stop()
    assert texts == [" Bonjour" * 20] * 5  # whole: nothing cut, nothing failed
    assert all(f.finish_reason is FinishReason.LENGTH and f.num_completion_tokens == 20 for f in finals)
    assert 32 < runner.most_cells <= 64  # two at a time (12 + 20 each), never three


def test_the_engine_refuses_a_sequence_larger_than_the_pool():
    runner = FakeRunner(kv_pool_cells=16)
    core = EngineCore(runner, Scheduler(2, 64, queue_timeout_s=5, kv_pool=16), "fake")
    core.start()
    client = AsyncEngine(core, 4)
    try:
        texts, finals = asyncio.run(asyncio.wait_for(collect(client, GenerationRequest(
            "big", [1, 5, 6, 7], SamplingParams(max_tokens=13))), 10))
    finally:
        core.stop()
    assert finals[0].finish_reason is FinishReason.ERROR and "exceed the KV cache (16 tokens)" in finals[0].error
    assert runner.steps == 0


def test_a_small_pool_queues_what_must_wait_and_refuses_what_never_fits(tmp_path):
    server = start_server(tmp_path / "data", env={"ALIZE_KV_LAYOUT": "pool", "ALIZE_KV_CACHE_MB": "16",
                                                  "ALIZE_PARALLEL": "4"})  # 16 MB: 512 tokens of SmolLM2
    try:
        _small_pool(server)
    finally:
        server.stop()


def _small_pool(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.key}"}
    body = {"model": "mistral-small-latest", "temperature": 0, "messages": [{"role": "user", "content": "Count"}]}
    never = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=60, json=body | {"max_tokens": 600})
    assert never.status_code == 400, never.text
    assert "512 tokens of KV cache (ALIZE_KV_CACHE_MB)" in never.json()["message"]
    results: list[httpx.Response] = []

    def ask() -> None:  # each may use ~330 tokens: the pool holds one at a time
        results.append(httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=120,
                                  json=body | {"max_tokens": 300, "min_tokens": 300}))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 3, [r.text for r in results]
    assert all(r.json()["usage"]["completion_tokens"] == 300 for r in results)  # whole, not truncated
    assert all(r.json()["choices"][0]["finish_reason"] == "length" for r in results)
    assert httpx.get(server.url + "/ready", timeout=10).status_code == 200  # still up
