"""What a step of one sequence costs by how many of its tokens it decodes (a draft to verify,
engine/drafting.py), in one-token steps, over a cached context of a given length: llama_decode
alone (logits for every row, as a verification asks), then the sampling of every row.

    .venv/bin/python benchmarks/verify_step.py [--context 1100] [--tokens 1 2 5 9 17 33] [--rounds 9]

A draft of k tokens all kept gives k+1 tokens for the step's cost: the ceiling of predicted
outputs and prompt-lookup decoding on this machine is (k+1) / cost(k+1). The rounds alternate
the sizes; medians. LLAMA_CPP_LIB_PATH points llama-cpp-python at another build of llama.cpp
(another patch under test) to compare."""

import argparse
import statistics
import time

import llama_cpp as lc

from alize.engine.params import BatchItem, EngineConfig, SamplingParams
from alize.engine.runner import LlamaRunner
from alize.services.models import builtin_chat_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--context", type=int, default=1100, help="tokens already in the sequence's KV cache")
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 5, 9, 17, 33])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    path = builtin_chat_file()
    runner = LlamaRunner(path, EngineConfig(args.context + 512, 1, 512, threads=args.threads))
    prompt = runner.tokenize("word " * args.context, True)[:args.context]
    for at in range(0, len(prompt), 512):
        runner.run([BatchItem(0, prompt[at:at + 512], at, False)], [None])
    sampler = runner.create_sampler(SamplingParams(max_tokens=1, temperature=0.0))
    batch, start = runner._batch, len(prompt)

    def step(n: int) -> tuple[float, float]:
        for i in range(n):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = prompt[i], start + i, 1, True
            batch.seq_id[i][0] = 0
        batch.n_tokens = n
        began = time.perf_counter()
        if lc.llama_decode(runner._ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        decoded = time.perf_counter()
        for i in range(n):
            runner._sample(sampler, i)
        sampled = time.perf_counter()
        runner.trim_sequence(0, start)
        return decoded - began, sampled - decoded

    times: dict[int, list[tuple[float, float]]] = {n: [] for n in args.tokens}
    for _ in range(args.rounds):
        for n in args.tokens:
            times[n].append(step(n))
    one = statistics.median(d for d, _ in times[min(args.tokens)])
    print(f"{path.name}, {len(prompt)} tokens cached, {args.threads} threads, median of {args.rounds}")
    print("| tokens in the step | llama_decode | in one-token steps | sampling every row |")
    print("|---|---|---|---|")
    for n in args.tokens:
        decode = statistics.median(d for d, _ in times[n])
        sample = statistics.median(s for _, s in times[n])
        print(f"| {n} | {decode * 1e3:.1f} ms | {decode / one:.2f} | {sample * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
