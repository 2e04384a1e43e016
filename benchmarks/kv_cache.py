"""The KV cache's layout and element type, on the runner alone (no HTTP), in one run:
f16 or q8_0 keys and values, one pool shared by the sequences or a buffer per sequence.
Reports decode throughput at 16 sequences and, against f16 per-sequence, how many of the
greedy tokens each variant reproduces (the same prompts, end-of-generation banned).

    .venv/bin/python benchmarks/kv_cache.py [--sequences 16] [--tokens 64] [--prompt-words 0]
"""

import argparse
import statistics
import time

from alize.engine.params import BatchItem, EngineConfig, SamplingParams
from alize.engine.runner import LlamaRunner
from alize.services.models import builtin_chat_file

VARIANTS = {"f16, per sequence": "f16", "f16, pool": "f16", "q8_0, pool": "q8_0"}


def generate(runner: LlamaRunner, prompts: list[list[int]], tokens: int) -> tuple[float, list[list[int]]]:
    """Greedy tokens for every prompt, decoded together; returns decode tok/s and the tokens."""
    params = SamplingParams(temperature=0.0, max_tokens=tokens, logit_bias=tuple(
        (t, float("-inf")) for t in runner.eog_tokens))
    samplers = [runner.create_sampler(params) for _ in prompts]
    for i, prompt in enumerate(prompts):
        runner.trim_sequence(i, 0)
        for at in range(0, len(prompt) - 1, 512):
            runner.run([BatchItem(i, prompt[at:min(at + 512, len(prompt) - 1)], at, False)], [None])
    last = [t[0] for t in runner.run([BatchItem(i, p[-1:], len(p) - 1, True) for i, p in enumerate(prompts)],
                                          samplers)]
    out = [[t] for t in last]
    positions = [len(p) for p in prompts]
    started = time.perf_counter()
    for _ in range(tokens - 1):
        items = [BatchItem(i, [last[i]], positions[i], True) for i in range(len(prompts))]
        last = [t[0] for t in runner.run(items, samplers)]
        positions = [p + 1 for p in positions]
        for i, t in enumerate(last):
            out[i].append(t)
    rate = len(prompts) * (tokens - 1) / (time.perf_counter() - started)
    for s in samplers:
        runner.free_sampler(s)
    return rate, out


def same_start(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-words", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool-mb", type=int, default=320, help="the pools' size (it must hold every sequence)")
    args = parser.parse_args()
    path = builtin_chat_file()
    runners = {name: LlamaRunner(path, EngineConfig(8192, args.sequences, 512, threads=2, kv_type=kind, kv_bytes=(
        args.pool_mb * 2**20 if "pool" in name else 0))) for name, kind in VARIANTS.items()}
    filler = " ".join(f"word{j % 97}" for j in range(args.prompt_words))
    topics = ["a cat", "the sea", "a robot", "Paris", "a storm", "bread", "a violin", "the moon"]
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    outputs: dict[str, list[list[int]]] = {}
    for run in range(args.runs):
        first = runners["f16, per sequence"]
        prompts = [first.tokenize(f"{filler} Write about {topics[i % len(topics)]}, part {run}-{i}.", True)
                   for i in range(args.sequences)]
        for name in (VARIANTS if run % 2 == 0 else reversed(VARIANTS)):
            rate, outputs[name] = generate(runners[name], prompts, args.tokens)
            rates[name].append(rate)
        reference = outputs["f16, per sequence"]
        for name in VARIANTS:
            kept = [same_start(o, r) for o, r in zip(outputs[name], reference, strict=True)]
            print(f"run {run}: {name}: {rates[name][-1]:.1f} tok/s; greedy tokens equal to f16 per sequence "
                  f"before the first difference: median {statistics.median(kept):.0f} of {args.tokens}, "
                  f"{sum(k == args.tokens for k in kept)}/{len(kept)} sequences identical", flush=True)
    print(f"\n| KV cache ({args.sequences} sequences, prompts +{args.prompt_words} words) | decode tok/s (median) |")
    print("|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {statistics.median(rates[name]):.0f} |")
    for runner in runners.values():
        runner.close()


if __name__ == "__main__":
    main()
