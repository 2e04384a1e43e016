"""What request metrics cost: two `alize serve` on the built-in model, one with metrics
(the default) and one with ALIZE_METRICS=false, the same load sent to each in turn at
concurrency 16 (bench.py's load: explicit, identical sampler settings), alternating which
goes first; prints the median of the per-run throughput ratios.

    benchmarks/metrics_cost.py --runs 5
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import alize_server, load


def alize(metrics: bool, threads: int, logs: Path):
    env = {"ALIZE_THREADS": str(threads), "ALIZE_METRICS": str(metrics).lower()}
    return alize_server(env, logs / f"alize-metrics-{metrics}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="alize-metrics-bench-"))
    ratios = []
    with ExitStack() as stack:
        on = stack.enter_context(alize(True, args.threads, logs))
        off = stack.enter_context(alize(False, args.threads, logs))
        for base, key in (on, off):
            asyncio.run(load(base, key, 1, 4, "warmup"))
        for run in range(args.runs):
            measured = {}
            for name, (base, key) in ([("on", on), ("off", off)] if run % 2 == 0 else [("off", off), ("on", on)]):
                print(f"run {run + 1}: metrics {name}", file=sys.stderr, flush=True)
                measured[name] = asyncio.run(load(base, key, args.concurrency, args.tokens, f"run-{run}"))
            ratios.append(measured["on"].tokens_per_s / measured["off"].tokens_per_s)
            print(f"  on {measured['on'].tokens_per_s:.1f} tok/s, off {measured['off'].tokens_per_s:.1f} tok/s",
                  file=sys.stderr, flush=True)
    print(f"| metrics on / off, throughput at c={args.concurrency} | {statistics.median(ratios):.3f}x "
          f"(runs: {', '.join(f'{r:.3f}' for r in ratios)}) | ≥ 0.99x |")


if __name__ == "__main__":
    main()
