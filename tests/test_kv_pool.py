"""The KV pool (ALIZE_KV_CACHE_MB): sequences share one KV cache and are admitted by what
they may use, prompt + max_tokens; free slots' cached prefixes give way, oldest first; a
request that can never fit is refused with a clear 400. Scheduler and engine over the
scripted FakeRunner (which fails a decode past the pool, as llama.cpp does), then the layout
chosen by a budget (ALIZE_KV_LAYOUT=auto), then a real server started with a small pool."""

import asyncio
import threading

import httpx
import pytest

from alize.config import Settings
from alize.engine.client import AsyncEngine
from alize.engine.core import EngineCore
from alize.engine.params import EngineConfig, FinishReason, GenerationRequest, SamplingParams
from alize.engine.scheduler import Scheduler
from alize.registry import Registry
from alize.services.models import kv_cache_sizes, machine_memory
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


def test_a_cache_lending_its_prefix_this_step_does_not_give_way_until_the_next():
    scheduler = Scheduler(max_sequences=4, token_budget=512, kv_pool=200)
    system, history = list(range(20)), list(range(1000, 1080))
    scheduler.add(sequence("conversation", prompt=system + history, scope="k"))
    decode_once(scheduler)
    lender = scheduler.running[0]
    scheduler.deallocate(lender)  # its slot keeps 101 cells
    scheduler.add(sequence("borrower", prompt=system + [-1] * 20, scope="k"))  # copies the 20, may use 48
    scheduler.add(sequence("big", prompt_len=100, scope="other"))  # may use 108: only with the cache gone
    scheduler.schedule()
    assert [s.request_id for s in scheduler.running] == ["borrower"] and scheduler.cleared == []
    assert scheduler.running[0].copy_kv_from == lender.slot
    scheduler.schedule()  # the engine made the copy: now the cache gives way
    assert [s.request_id for s in scheduler.running] == ["borrower", "big"]
    assert scheduler.cleared == [lender.slot]


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


def test_the_settings_give_each_layout_its_sizes(tmp_path):
    def sizes(**settings):
        return kv_cache_sizes(Settings(data_dir=tmp_path, **settings))

    assert sizes() == (0, 0, machine_memory() // 4)  # auto: a quarter of the machine
    assert sizes(kv_cache_mb=512) == (0, 0, 512 * 2**20)
    assert sizes(kv_layout="per-sequence", kv_cache_mb=512) == (0, 0, 0)
    assert sizes(kv_layout="pool", kv_cache_mb=512) == (512 * 2**20, 0, 0)
    pool, grown, budget = sizes(kv_layout="pool")
    assert pool == min(320 * 2**20, machine_memory() // 8) and grown == machine_memory() // 8 and budget == 0


def test_a_budget_keeps_buffers_of_their_own_where_every_context_fits_and_pools_where_not():
    from alize.engine.runner import LlamaRunner

    registry = Registry.load()
    path = registry.resolve_path(registry.backends["smollm2-135m-instruct"])
    every = 4 * 2048 * 23_040  # 4 sequences x 2,048 tokens x SmolLM2's bytes a token: 180 MB
    roomy = LlamaRunner(path, EngineConfig(2048, 4, 512, threads=2, kv_budget=every))
    tight = LlamaRunner(path, EngineConfig(2048, 4, 512, threads=2, kv_budget=every // 3))
    try:
        assert roomy.kv_cell_bytes() == 23_040
        assert roomy.kv_pool_cells is None
        assert tight.kv_pool_cells == 2816  # 60 MB hold 2,730 tokens, rounded up to 256 (llama.cpp pads so)
    finally:
        roomy.close()
        tight.close()


@pytest.mark.parametrize("layout", ["pool", "auto"])
def test_a_small_pool_queues_what_must_wait_and_refuses_what_never_fits(tmp_path, layout):
    # 16 MB: 512 tokens of SmolLM2; auto (the default) pools as 4 x 8,192 tokens do not fit
    server = start_server(tmp_path / "data", env={"ALIZE_KV_LAYOUT": layout, "ALIZE_KV_CACHE_MB": "16",
                                                  "ALIZE_PARALLEL": "4"})
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
