"""Raw engine throughput, without HTTP: N sequences prefilled, then decoded together.

    .venv/bin/python benchmarks/engine_probe.py [--sequences 16] [--tokens 64] [--context 8192] [--unified] [--grammar]

Separates what llama_decode costs from what the server around it adds: compare its
decode tok/s with the server's aggregate tok/s at the same concurrency. With --grammar every
sequence samples under a JSON Schema grammar: compare with a run without it for the cost
of structured output per token."""

import argparse
import time

from alize.engine.grammar import schema_to_gbnf
from alize.engine.params import BatchItem, EngineConfig, SamplingParams
from alize.engine.runner import LlamaRunner
from alize.services.models import builtin_chat_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unified", action="store_true")
    parser.add_argument("--slots", type=int, default=0, help="KV slots to allocate (default: --sequences)")
    parser.add_argument("--grammar", action="store_true",
                        help="sample under a JSON Schema grammar (structured output) to measure its cost")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-words", type=int, default=0, help="lengthen each prompt by this many words")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy; else the full distribution")
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--unseeded", action="store_true",
                        help="no seed: sampled draws in numpy (engine/draw.py) rather than llama.cpp's chain")
    args = parser.parse_args()
    config = EngineConfig(args.context, max(args.slots, args.sequences), 512, threads=args.threads, kv_unified=args.unified)
    runner = LlamaRunner(builtin_chat_file(), config)
    bias = tuple((t, float("-inf")) for t in runner.eog_tokens)
    grammar = None
    if args.grammar:
        # the start of a JSON object whose one string never ends, so that every sequence
        # decodes --tokens tokens under the grammar (a closed object would end the answer)
        grammar = 'root ::= "{" space "\\"story\\"" space ":" space "\\"" char*\n' + "\n".join(
            line for line in schema_to_gbnf({"type": "string"}).splitlines() if line.startswith(("char", "space")))
    params = SamplingParams(temperature=args.temperature, max_tokens=args.tokens, logit_bias=bias, grammar=grammar,
                            repetition_penalty=args.repetition_penalty, seed=None if args.unseeded else 7)
    for run in range(args.runs):
        filler = " ".join(f"word{j % 97}" for j in range(args.prompt_words))
        prompts = [runner.tokenize(f"{filler} Tell me story number {run}-{i} about a cat.", True)
                   for i in range(args.sequences)]
        samplers = [runner.create_sampler(params) for _ in prompts]
        for i in range(args.sequences):
            runner.trim_sequence(i, 0)
        start = time.perf_counter()
        for i, p in enumerate(prompts):  # in chunks of the batch size, as the scheduler does
            for at in range(0, len(p) - 1, 512):
                runner.run([BatchItem(i, p[at:min(at + 512, len(p) - 1)], at, False)], [None])
        last = [t[0] for t in runner.run([BatchItem(i, p[-1:], len(p) - 1, True) for i, p in enumerate(prompts)],
                                          samplers)]
        prefill_s = time.perf_counter() - start
        positions = [len(p) for p in prompts]
        start = time.perf_counter()
        for _ in range(args.tokens - 1):
            items = [BatchItem(i, [last[i]], positions[i], True) for i in range(args.sequences)]
            last = [t[0] for t in runner.run(items, samplers)]
            positions = [p + 1 for p in positions]
        decode_s = time.perf_counter() - start
        for s in samplers:
            runner.free_sampler(s)
        n = args.sequences * (args.tokens - 1)
        print(f"run {run}: prefill {sum(map(len, prompts))} tokens in {prefill_s:.3f} s; "
              f"decode {n} tokens in {decode_s:.2f} s = {n / decode_s:.1f} tok/s "
              f"({args.sequences} sequences, context {args.context}, unified={args.unified}, grammar={args.grammar}, "
              f"temperature {args.temperature})")
    runner.close()


if __name__ == "__main__":
    main()
