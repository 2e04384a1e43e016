"""The llama.cpp build and the engine, without the HTTP layer."""

import asyncio

import numpy as np
import pytest

from alize.engine.params import EngineConfig, GenerationRequest, SamplingParams
from alize.engine.text import TextAssembler
from alize.registry import Registry
from alize.services.models import builtin_chat_file


@pytest.fixture(scope="module")
def chat_model():
    from alize.engine.chat_model import ChatModel

    config = EngineConfig(context_per_sequence=2048, max_sequences=4, threads=2)
    model = ChatModel.load("smollm2", builtin_chat_file(), config)  # the file the server runs
    yield model
    model.close()


def test_build_decodes_tokens(chat_model):
    # The portable build must decode on this CPU (the native build crashed on AMX here).
    prompt = chat_model.tokenize_prompt(chat_model.template.render(
        [{"role": "user", "content": "What is 2+2?"}]))
    request = GenerationRequest("t1", prompt, SamplingParams(max_tokens=5, temperature=0))

    async def run():
        return [e async for e in chat_model.engine.generate(request)]

    events = asyncio.run(run())
    assert events[-1].finish_reason is not None
    assert 1 <= events[-1].num_completion_tokens <= 5
    assert "".join(e.text for e in events).strip()


def test_chat_template_comes_from_the_gguf(chat_model):
    text = chat_model.template.render([{"role": "user", "content": "Hi"}])
    assert "<|im_start|>user\nHi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_abort_frees_the_sequence(chat_model):
    prompt = chat_model.tokenize_prompt("Tell me a very long story.")

    async def run():
        got = 0
        gen = chat_model.engine.generate(GenerationRequest("t2", prompt, SamplingParams(max_tokens=500)))
        async for _ in gen:
            got += 1
            if got == 3:
                break
        await gen.aclose()
        # the slot is free again: a new request runs to completion
        events = [e async for e in chat_model.engine.generate(
            GenerationRequest("t3", prompt, SamplingParams(max_tokens=2, temperature=0, min_tokens=2)))]
        return events

    events = asyncio.run(run())
    assert events[-1].num_completion_tokens == 2


def test_empty_prompt_fails_cleanly_and_the_engine_goes_on(chat_model):
    async def run():
        bad = [e async for e in chat_model.engine.generate(
            GenerationRequest("t4", [], SamplingParams(max_tokens=3)))]
        good = [e async for e in chat_model.engine.generate(
            GenerationRequest("t5", chat_model.tokenize_prompt("Hi"),
                              SamplingParams(max_tokens=2, min_tokens=2)))]
        return bad, good

    bad, good = asyncio.run(run())
    assert bad[-1].finish_reason == "error" and bad[-1].error
    assert good[-1].num_completion_tokens == 2


def test_assembler_holds_split_characters():
    asm = TextAssembler()
    data = "é🎉".encode()
    out = [asm.feed(data[i:i + 1]) for i in range(len(data))]
    assert out == ["", "é", "", "", "", "🎉"]


def test_an_answer_cut_inside_a_character_ends_before_it():
    asm = TextAssembler()
    assert asm.feed("très".encode()) == "très"
    assert asm.feed("🎉".encode()[:2]) == ""
    assert asm.finish() == "" and asm.text == "très"
    # bytes that can never be UTF-8 are the model's output: replaced where they stand
    asm = TextAssembler()
    assert asm.feed(b"a\xffb") == "a\ufffdb" and asm.finish() == ""


def test_assembler_cuts_at_stop_strings_across_tokens():
    asm = TextAssembler(stop=("END",))
    assert asm.feed(b"abc E") == "abc "
    assert asm.feed(b"N") == ""
    assert asm.feed(b"Dxyz") == ""
    assert asm.is_stopped and asm.released_text == "abc "
    asm2 = TextAssembler(stop=("END",))
    assert asm2.feed(b"EN") == "" and asm2.feed(b"o") == "ENo"
    assert asm2.finish() == ""


def _resident_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_kv_cache_is_resident_only_where_sequences_write():
    # 8 sequences x 8,192 tokens of f16 KV for SmolLM2 (23,040 bytes a token) are 1,440 MB, allocated at start; the
    # patched build (scripts/llama-cpp-lazy-kv-memory.patch) hands the zeroed pages back to
    # the kernel, so only the cells sequences write become resident.
    from alize.engine.chat_model import ChatModel

    registry = Registry.load()
    backend = registry.backends["smollm2-135m-instruct"]
    before = _resident_mb()
    model = ChatModel.load("lazy", registry.resolve_path(backend), EngineConfig(8192, 8, 512, threads=2))
    try:
        loaded = _resident_mb() - before
        prompt = model.tokenize_prompt("Write a long story about a lighthouse. " * 40)
        request = GenerationRequest("lazy", prompt, SamplingParams(max_tokens=8, temperature=0))

        async def run():
            return [e async for e in model.engine.generate(request)]

        assert asyncio.run(run())[-1].finish_reason is not None
        used = _resident_mb() - before
    finally:
        model.close()
    assert loaded < 400, f"loading made {loaded:.0f} MB resident: the 1,440 MB KV cache was touched"
    assert used < 400, f"one {len(prompt)}-token request left {used:.0f} MB resident"


@pytest.mark.parametrize("kv_bytes", [0, 200_000_000], ids=["a buffer per sequence", "a shared KV pool"])
def test_a_positions_logits_are_the_same_alone_with_a_draft_or_beside_others(kv_bytes):
    # What makes a prediction's answer the very answer without it: attention sums a row's
    # cells in the same order however many rows the step holds (scripts/llama-cpp-*-attention.patch).
    from alize.engine.params import BatchItem
    from alize.engine.runner import LlamaRunner

    runner = LlamaRunner(builtin_chat_file(), EngineConfig(2048, 3, 512, threads=2, kv_bytes=kv_bytes))
    greedy = runner.create_sampler(SamplingParams(max_tokens=1, temperature=0))
    try:
        text = runner.tokenize("The quick brown fox jumps over the lazy dog. " * 150, True)
        prompt, draft = text[:1200], text[1200:1217]  # past 512 cells, and not on a 64-cell tile edge
        for seq in (0, 1):
            for at in range(0, len(prompt), 512):
                runner.run([BatchItem(seq, prompt[at:at + 512], at, False)], [])
        runner.run([BatchItem(2, prompt[:40], 0, False)], [])
        start = len(prompt)

        def logits(items: list[BatchItem], count: int) -> np.ndarray:
            runner.run(items, [greedy] * len(items))
            return np.stack([runner._logits(row).copy() for row in range(count)])

        together = logits([BatchItem(0, draft, start, True, num_draft=16)], 17)
        runner.trim_sequence(0, start)
        alone = np.concatenate([logits([BatchItem(0, [token], start + i, True)], 1) for i, token in enumerate(draft)])
        runner.trim_sequence(0, start)
        # written in slot order, whatever the items' order: sequence 0's rows come first
        beside = logits([BatchItem(1, [7], start, True), BatchItem(0, draft, start, True, num_draft=16),
                         BatchItem(2, [9], 40, True)], 17)
    finally:
        runner.free_sampler(greedy)
        runner.close()
    assert np.array_equal(together, alone)
    assert np.array_equal(beside, together)


def test_the_repacked_q8_0_product_gives_the_plain_kernels_logits(monkeypatch):
    # The built-in model's Q8_0 weights are repacked for AVX-512 VNNI where the CPU has it
    # (scripts/llama-cpp-q8-0-repack.patch). Loaded without llama.cpp's repacking they run on
    # its plain kernels: the same weights and integer products, summed in another order, so
    # the logits agree to rounding, which this 135M model amplifies to a few tenths (about as
    # much as attention summed in another order does).
    import llama_cpp as lc

    from alize.engine.params import BatchItem
    from alize.engine.runner import LlamaRunner

    default = lc.llama_model_default_params
    logits = {}
    for repacked in (True, False):
        def params(repacked: bool = repacked) -> lc.llama_model_params:
            chosen = default()
            chosen.use_extra_bufts = repacked
            return chosen

        monkeypatch.setattr(lc, "llama_model_default_params", params)
        runner = LlamaRunner(builtin_chat_file(), EngineConfig(1024, 1, 512, threads=2))
        greedy = runner.create_sampler(SamplingParams(max_tokens=1, temperature=0))
        try:
            text = runner.tokenize("The lighthouse keeper climbed the stairs every evening, and " * 6, True)
            runner.run([BatchItem(0, text[:-8], 0, False)], [])
            rows = []
            for i, token in enumerate(text[-8:]):
                runner.run([BatchItem(0, [token], len(text) - 8 + i, True)], [greedy])
                rows.append(runner._logits(0).copy())
            logits[repacked] = np.stack(rows)
        finally:
            runner.free_sampler(greedy)
            runner.close()
    repacked, plain = logits[True], logits[False]
    assert min(np.corrcoef(repacked[i], plain[i])[0, 1] for i in range(8)) > 0.998
    assert (repacked.argmax(axis=1) == plain.argmax(axis=1)).sum() >= 7
    assert np.abs(repacked - plain).max() < 2.0


def test_the_step_cost_is_measured_where_a_step_has_room():
    from alize.engine.drafting import MAX_DRAFT
    from alize.engine.runner import STEP_COST_TOKENS, LlamaRunner

    runner = LlamaRunner(builtin_chat_file(), EngineConfig(256, 1, 512, threads=2))
    try:
        cost = runner.step_cost()
    finally:
        runner.close()
    assert [n for n, _ in cost.points] == list(STEP_COST_TOKENS) and STEP_COST_TOKENS[-1] == MAX_DRAFT + 1
    assert cost(1) == 1.0 < cost(MAX_DRAFT + 1)  # on CPU cores a 49-token step costs more than one of one
    small = LlamaRunner(builtin_chat_file(), EngineConfig(256, 1, 8, threads=2))  # a step of 8 tokens at most
    try:
        assert [n for n, _ in small.step_cost().points] == [1, 2]  # measured up to what fits
    finally:
        small.close()


def test_a_greedy_pick_under_a_grammar_is_the_same_from_the_likeliest_tokens_first(monkeypatch):
    """When the grammar rejects the greedy token, the runner checks the 64 likeliest first:
    the tokens chosen are those the whole vocabulary under the grammar gives (llama.cpp's own
    way), and the shortcut is taken."""
    from alize.engine import runner as runner_module
    from alize.engine.grammar import schema_to_gbnf
    from alize.engine.params import BatchItem

    schema = {"type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"},
                                               "degrees": {"type": "integer"}},
              "required": ["city", "sunny", "degrees"], "additionalProperties": False}
    grammar = schema_to_gbnf(schema, strict=True)
    runner = runner_module.LlamaRunner(builtin_chat_file(), EngineConfig(1024, 1, 512, threads=2))
    prompt = runner.tokenize("<|im_start|>user\nThe weather in Lyon, as JSON, please.<|im_end|>\n"
                             "<|im_start|>assistant\n", False)
    shortcuts = []
    likeliest_first = runner_module.LlamaRunner._likeliest_first

    def counted(self, grammar, kept):
        out = likeliest_first(self, grammar, kept)
        shortcuts.append(len(out) < len(kept))
        return out

    monkeypatch.setattr(runner_module.LlamaRunner, "_likeliest_first", counted)

    def answer() -> list[int]:
        sampler = runner.create_sampler(SamplingParams(max_tokens=40, temperature=0, grammar=grammar))
        runner.trim_sequence(0, 0)
        tokens = [runner.run([BatchItem(0, prompt, 0, True)], [sampler])[0][0]]
        while len(tokens) < 40 and tokens[-1] not in runner.eog_tokens:
            tokens += runner.run([BatchItem(0, [tokens[-1]], len(prompt) + len(tokens) - 1, True)], [sampler])[0]
        runner.free_sampler(sampler)
        return tokens

    try:
        fast = answer()
        monkeypatch.setattr(runner_module, "GRAMMAR_FIRST", 10**9)  # the whole vocabulary, every time
        whole = answer()
    finally:
        runner.close()
    assert fast == whole
    assert any(shortcuts), "the grammar never rejected the greedy token: nothing was tested"
