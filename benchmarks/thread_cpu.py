"""Where a streamed token's CPU goes, server by server: the same streaming load as bench.py
on servers already running, alternated, with each server thread's CPU time (the kernel's
schedstat, in ns) divided by the tokens streamed.

    .venv/bin/python benchmarks/thread_cpu.py --runs 6 --concurrency 1 \
        alize=http://127.0.0.1:8300 llama-server=http://127.0.0.1:8301 [--key alz-...]

The last server named is the reference for the ratios. Per server it prints the median
tok/s, the median of the per-run ratios, the CPU per token of the process's main thread
(Alizé's event loop) and of every thread but the two busiest (the decode threads: for
Alizé the engine thread, whose Python between two decodes counts there, and llama.cpp's
OpenMP worker). On two cores, every cycle spent outside the decode comes out of it.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench


def pid_listening(port: int) -> int:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def thread_ns(pid: int) -> dict[int, int]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except OSError:  # the thread ended meanwhile
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("servers", nargs="+", help="name=base URL, the reference last")
    parser.add_argument("--key", default=os.environ.get("ALIZE_API_KEY", "none"))
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    servers = [tuple(spec.split("=", 1)) for spec in args.servers]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in servers}
    for run in range(args.runs):
        for name, base in servers[run % len(servers):] + servers[:run % len(servers)]:
            pid = pid_listening(int(base.rsplit(":", 1)[1]))
            before = thread_ns(pid)
            level = asyncio.run(bench.load(base, args.key, args.concurrency, args.tokens, f"{name}-{time.time()}"))
            after = thread_ns(pid)
            tokens = max(4, 2 * args.concurrency) * args.tokens
            per_thread = sorted(((after[t] - before.get(t, 0)) / tokens / 1e3 for t in after), reverse=True)
            main_thread = (after[pid] - before.get(pid, 0)) / tokens / 1e3
            results[name].append((level.tokens_per_s, main_thread, sum(per_thread[2:])))
    reference = results[servers[-1][0]]
    for name, runs in results.items():
        ratios = [run[0] / ref[0] for run, ref in zip(runs, reference, strict=True)]
        print(f"{name}: {statistics.median(r[0] for r in runs):.1f} tok/s, {statistics.median(ratios):.3f}x "
              f"(runs {', '.join(f'{r:.2f}' for r in ratios)}); CPU a token: main thread "
              f"{statistics.median(r[1] for r in runs):.0f} µs, outside the two decode threads "
              f"{statistics.median(r[2] for r in runs):.0f} µs")


if __name__ == "__main__":
    main()
