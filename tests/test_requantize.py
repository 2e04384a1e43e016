"""The built-in model's weights rewritten as Q8_0 (engine/requantize.py): a small GGUF
written here is rewritten tensor by tensor and cached; then the built-in model's rewrite
keeps what the engine relies on, each position's logits the same whether decoded alone or
with others (which a float16 rewrite would not)."""

import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from alize.engine import requantize
from alize.engine.params import BatchItem, EngineConfig, SamplingParams
from alize.errors import ConfigError
from alize.registry import Registry
from alize.services.models import builtin_chat_file

RNG = np.random.default_rng(7)
WEIGHTS = (RNG.standard_normal((8, 64)) * 0.05 + 0.01).astype(np.float32)
NORM = RNG.standard_normal(64).astype(np.float32)
EMBED = RNG.standard_normal((4, 64)).astype(np.float32)


def small_gguf(path: Path, weight_type: Q = Q.Q4_1) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    writer.add_context_length(128)
    writer.add_token_list(["<s>", "a", "b"])
    writer.add_tensor("token_embd.weight", gguf.quants.quantize(EMBED, Q.Q8_0), raw_dtype=Q.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", NORM)
    writer.add_tensor("blk.0.ffn_up.weight", gguf.quants.quantize(WEIGHTS, weight_type), raw_dtype=weight_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def test_q4_1_weights_become_q8_0_and_everything_else_is_copied(tmp_path):
    source = small_gguf(tmp_path / "tiny.gguf")
    out = requantize.rewritten(source, tmp_path / "cache")
    assert out.parent == tmp_path / "cache" and out != source
    before, after = tensors(source), tensors(out)
    assert list(before) == list(after)
    up = after["blk.0.ffn_up.weight"]
    assert up.tensor_type == Q.Q8_0 and list(up.shape) == [64, 8]
    old = gguf.quants.dequantize(before["blk.0.ffn_up.weight"].data, Q.Q4_1)
    new = gguf.quants.dequantize(up.data, Q.Q8_0)
    # Q8_0's rounding: half a step of each block of 32's largest value over 127 (plus float16 scales)
    step = np.abs(old.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(new - old).reshape(-1, 32) <= step * 0.5 + 1e-4)
    for name in ("token_embd.weight", "blk.0.attn_norm.weight"):
        assert after[name].tensor_type == before[name].tensor_type
        assert np.array_equal(after[name].data, before[name].data)
    fields = gguf.GGUFReader(out).fields
    assert fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    assert fields[requantize.SOURCE_TYPE_KEY].contents() == "MOSTLY_Q4_1"
    assert fields["general.name"].contents() == "tiny" and fields["llama.context_length"].contents() == 128
    assert fields["tokenizer.ggml.tokens"].contents() == ["<s>", "a", "b"]


def test_the_rewrite_is_made_once_per_content_and_again_when_the_content_changes(tmp_path, monkeypatch):
    """A fresh install (another path, another time, the same package file) reuses the rewrite;
    a rewrite of an earlier version is removed when a new one is written."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny-q8_0-0123456789abcdef.gguf").write_bytes(b"an earlier version's rewrite")
    source = small_gguf(tmp_path / "tiny.gguf")
    first = requantize.rewritten(source, cache)
    assert not (cache / "tiny-q8_0-0123456789abcdef.gguf").exists()
    monkeypatch.setattr(requantize, "write_q8_0", lambda src, out: pytest.fail("rewritten again"))
    assert requantize.rewritten(source, cache) == first
    (tmp_path / "elsewhere").mkdir()
    copy = small_gguf(tmp_path / "elsewhere" / "tiny.gguf")
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    assert requantize.rewritten(copy, cache) == first
    monkeypatch.undo()
    changed = small_gguf(tmp_path / "elsewhere" / "tiny.gguf", weight_type=Q.Q5_1)
    second = requantize.rewritten(changed, cache)
    assert second != first and second.is_file() and first.is_file()
    assert tensors(second)["blk.0.ffn_up.weight"].tensor_type == Q.Q8_0
    assert not list(cache.glob("*.part"))


def test_a_file_with_batched_kernels_already_is_used_as_it_is(tmp_path):
    source = small_gguf(tmp_path / "tiny.gguf", weight_type=Q.Q8_0)
    assert requantize.rewritten(source, tmp_path / "cache") == source
    assert not list((tmp_path / "cache").glob("*.gguf"))


def test_requantize_is_for_chat_backends(tmp_path):
    config = tmp_path / "models.toml"
    config.write_text('[backends.e]\nkind = "embedding"\npath = "builtin:all-minilm-l6-v2"\n'
                      'context_length = 256\nrequantize = "q8_0"\n')
    with pytest.raises(ConfigError, match="requantize applies to a chat backend"):
        Registry.load(config)


def test_the_built_in_model_decodes_each_position_the_same_alone_or_in_a_step_of_several():
    """Draft verification and batching rely on it: a step of n tokens gives each position the
    logits a one-token step gives (bit for bit), so greedy answers never depend on batching."""
    from alize.engine.runner import LlamaRunner

    path = builtin_chat_file()
    assert gguf.GGUFReader(path).fields[requantize.SOURCE_TYPE_KEY].contents() == "MOSTLY_Q4_1"
    runner = LlamaRunner(path, EngineConfig(1024, 1, 512, threads=2))
    sampler = runner.create_sampler(SamplingParams(max_tokens=1, temperature=0.0))
    text = "Alizé serves Mistral's API on your own machine, with keys, limits and metering. " * 4
    tokens = runner.tokenize(text, True)[:90]

    def logits(step: int) -> np.ndarray:
        runner.trim_sequence(0, 0)
        runner.run([BatchItem(0, tokens[:40], 0, False)], [None])
        rows = []
        for at in range(40, len(tokens) - 1, step):
            chunk = tokens[at:min(at + step, len(tokens) - 1)]
            # every position's logits: the chunk is the pending token and a "draft" that holds
            runner.run([BatchItem(0, chunk, at, True, len(chunk) - 1)], [sampler])
            rows += [np.array(runner._logits(i), copy=True) for i in range(len(chunk))]
        return np.array(rows)

    try:
        one_at_a_time = logits(1)
        for step in (2, 9):
            assert np.array_equal(logits(step), one_at_a_time)
    finally:
        runner.free_sampler(sampler)
        runner.close()
