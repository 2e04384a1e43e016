"""Logit bias and penalties applied in numpy (engine/penalties.py), and greedy picks in
numpy (engine/draw.py), give exactly the tokens llama.cpp's own logit_bias, penalties and
greedy samplers give: the same model, prompts and seeds, greedy and sampled, decoded
together, token for token."""

import pytest

from alize.engine.params import BatchItem, EngineConfig, SamplingParams
from alize.registry import Registry

TOPICS = ["a cat", "the sea", "a robot", "Paris"]


@pytest.fixture(scope="module")
def runners():
    from alize.engine.runner import LlamaRunner

    registry = Registry.load()
    path = registry.resolve_path(registry.backends["smollm2-135m-instruct"])
    numpy_side, c_side = (LlamaRunner(path, EngineConfig(2048, len(TOPICS), 512, threads=2)) for _ in range(2))
    c_side.penalties_in_c = True
    yield numpy_side, c_side
    numpy_side.close()
    c_side.close()


def _generate(runner, params: SamplingParams, tokens: int = 48) -> list[list[int]]:
    prompts = [runner.tokenize(f"<|im_start|>user\nWrite a long story about {t}.<|im_end|>\n<|im_start|>assistant\n",
                               True) for t in TOPICS]
    samplers = [runner.create_sampler(params, ban_eog=True) for _ in prompts]
    for i in range(len(prompts)):
        runner.trim_sequence(i, 0)
    last = [t[0] for t in runner.run([BatchItem(i, p, 0, True) for i, p in enumerate(prompts)], samplers)]
    out, positions = [[t] for t in last], [len(p) for p in prompts]
    for _ in range(tokens - 1):
        last = [t[0] for t in runner.run([BatchItem(i, [last[i]], positions[i], True) for i in range(len(prompts))],
                                         samplers)]
        positions = [p + 1 for p in positions]
        for i, t in enumerate(last):
            out[i].append(t)
    for s in samplers:
        runner.free_sampler(s)
    return out


@pytest.mark.parametrize("params", [
    SamplingParams(max_tokens=48, temperature=0.0, repetition_penalty=1.3),
    SamplingParams(max_tokens=48, temperature=0.7, seed=11, repetition_penalty=1.1),
    SamplingParams(max_tokens=48, temperature=0.9, seed=5, repetition_penalty=1.05, frequency_penalty=0.4,
                   presence_penalty=0.3, logit_bias=((28, 2.5), (28, -1.0), (330, -100.0))),
    # more biases than engine/penalties.py adds one by one: fancy indexing, then np.add.at
    SamplingParams(max_tokens=48, temperature=0.0, logit_bias=tuple((t, (-1) ** t * 1.5) for t in range(260, 272))),
    SamplingParams(max_tokens=48, temperature=0.0,
                   logit_bias=((28, 2.0), (28, -0.5), *((t, -2.5) for t in range(260, 272)))),
], ids=["greedy", "sampled", "all-penalties-and-bias", "many-biases", "many-biases-one-twice"])
def test_the_numpy_path_gives_llama_cpps_tokens(runners, params):
    numpy_side, c_side = runners
    from alize.engine.runner import PenalizedChain, TemperatureDraw

    sampler = numpy_side.create_sampler(params)
    assert isinstance(sampler, TemperatureDraw if params.is_greedy else PenalizedChain)
    numpy_side.free_sampler(sampler)
    ours, theirs = _generate(numpy_side, params), _generate(c_side, params)
    assert ours == theirs
    if params.repetition_penalty >= 1.3:  # the penalty does bite: without it, greedy repeats itself more
        plain = _generate(numpy_side, SamplingParams(max_tokens=48, temperature=0.0))
        assert plain != ours


def test_the_numpy_draw_follows_the_distribution_at_its_temperature():
    import numpy as np

    from alize.engine.draw import TemperatureDraw
    from alize.engine.penalties import Penalties

    logits = np.array([2.0, 1.0, 0.0, -1.0, 5.0, 0.5], dtype=np.float32)
    expected = np.exp(logits / 0.7) / np.exp(logits / 0.7).sum()
    expected[4] = 0  # banned below
    expected /= expected.sum()
    draw = TemperatureDraw(0.7, Penalties([(4, float("-inf"))], 1.0, 0.0, 0.0))
    n = 40_000
    counts = np.bincount([draw.sample(logits.copy()) for _ in range(n)], minlength=len(logits))
    assert counts[4] == 0  # a banned token is never drawn
    # within 5 standard deviations of each expected count
    assert np.all(np.abs(counts - n * expected) <= 5 * np.sqrt(n * expected * (1 - expected)) + 1)
    penalized = TemperatureDraw(0.7, Penalties([], 1.0, 0.0, 100.0))  # a presence penalty no token survives
    assert len({penalized.sample(logits.copy()) for _ in range(6)}) == 6  # each drawn once
