"""What a running batch job costs interactive users: the same streaming chat load against one
Alizé server, alternately alone and while a large batch job runs (runs interleaved, so
that the machine's noise falls on both sides alike). Two kinds of load: closed loop (N
clients, each sending its next request when the last one ends; all start together) and
open loop (requests arriving at random, Poisson, at a given rate, the same arrival times
on both sides). Prints medians over the runs of TTFT p50/p99 and output tokens/s, the
ratios with-batch/alone, and the batch's own throughput with and without the load.

    .venv/bin/python benchmarks/batch_impact.py [--runs 3] [--threads 2] [--concurrency 1 4] [--rates 1 3]
"""

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BANNED, ROOT, Level, free_port, load, one_request, percentile, serve


async def open_load(base: str, key: str, rate: float, count: int, num_tokens: int, tag: str, seed: int) -> Level:
    """`count` requests arriving at Poisson times (`rate` per second, fixed by `seed`)."""
    arrivals = random.Random(seed)
    at, times = 0.0, []
    for _ in range(count):
        at += arrivals.expovariate(rate)
        times.append(at)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:
        started = time.perf_counter()

        async def one(i: int, when: float) -> tuple[float, float, int]:
            await asyncio.sleep(max(0.0, started + when - time.perf_counter()))
            body = {"model": "mistral-small-latest", "stream": True, "max_tokens": num_tokens, "temperature": 0,
                    "logit_bias": BANNED, "stream_options": {"include_usage": True}, "repetition_penalty": 1.0,
                    "messages": [{"role": "user", "content": f"[{tag} {i}] Tell me about the number {i}."}]}
            return await one_request(client, body)

        results = await asyncio.gather(*(one(i, when) for i, when in enumerate(times)))
        wall = time.perf_counter() - started
    ttfts, lats = [r[0] for r in results], [r[1] for r in results]
    return Level(0, sum(r[2] for r in results) / wall, percentile(ttfts, 0.5), percentile(ttfts, 0.99),
                 percentile(lats, 0.5), percentile(lats, 0.99))


def start_batch(http: httpx.Client, lines: int, tag: str) -> str:
    items = [{"custom_id": str(i), "body": {"max_tokens": 64, "temperature": 0, "logit_bias": BANNED,
                                            "messages": [{"role": "user", "content": f"[{tag}] Write about {i}."}]}}
             for i in range(lines)]
    data = "".join(json.dumps(item) + "\n" for item in items).encode()
    file_id = http.post("/v1/files", files={"file": ("load.jsonl", data)}, data={"purpose": "batch"}).json()["id"]
    job = http.post("/v1/batch/jobs", json={"input_files": [file_id], "model": "mistral-small-latest",
                                            "endpoint": "/v1/chat/completions"}).json()
    while http.get(f"/v1/batch/jobs/{job['id']}").json()["completed_requests"] < 2:  # in its stride
        time.sleep(0.2)
    return job["id"]


def stop_batch(http: httpx.Client, job_id: str) -> None:
    http.post(f"/v1/batch/jobs/{job_id}/cancel")
    while http.get(f"/v1/batch/jobs/{job_id}").json()["status"] != "CANCELLED":
        time.sleep(0.2)


def completed(http: httpx.Client, job_id: str) -> int:
    return http.get(f"/v1/batch/jobs/{job_id}").json()["completed_requests"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="closed-loop clients")
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 3.0], help="open-loop requests/s")
    parser.add_argument("--requests", type=int, default=24, help="requests per open-loop level")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per interactive request")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds to measure the batch alone")
    args = parser.parse_args()

    loads: dict[str, Callable[[str, str, str, int], Coroutine[Any, Any, Level]]] = {}
    for c in args.concurrency:
        loads[f"closed loop, {c} client{'s' if c > 1 else ''}"] = (
            lambda base, key, tag, run, c=c: load(base, key, c, args.tokens, tag))
    for rate in args.rates:
        loads[f"open loop, {rate:g} req/s"] = (
            lambda base, key, tag, run, rate=rate: open_load(base, key, rate, args.requests, args.tokens, tag, run))
    data = Path(tempfile.mkdtemp(prefix="alize-batch-bench-"))
    alize = str(ROOT / ".venv/bin/alize")
    key = subprocess.run([alize, "keys", "create", "--name", "bench", "--data-dir", str(data)],
                         capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    alone: dict[str, list[Level]] = {name: [] for name in loads}
    loaded: dict[str, list[Level]] = {name: [] for name in loads}
    busy_rates: list[float] = []
    idle_rates: list[float] = []
    with (serve([alize, "serve", "--port", str(port), "--data-dir", str(data)], f"{base}/health",
                {"ALIZE_THREADS": str(args.threads)}, data / "server.log"),
          httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600) as http):
        asyncio.run(load(base, key, 1, 4, "warmup"))
        for run in range(args.runs):
            for name, make in loads.items():
                alone[name].append(asyncio.run(make(base, key, f"alone-{run}-{name}", run)))
            job_id = start_batch(http, 5000, f"batch-{run}")
            before, started = completed(http, job_id), time.perf_counter()
            for name, make in loads.items():
                loaded[name].append(asyncio.run(make(base, key, f"loaded-{run}-{name}", run)))
            busy_rates.append((completed(http, job_id) - before) / (time.perf_counter() - started))
            before, started = completed(http, job_id), time.perf_counter()
            time.sleep(args.idle_s)
            idle_rates.append((completed(http, job_id) - before) / (time.perf_counter() - started))
            stop_batch(http, job_id)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    shutil.rmtree(data, ignore_errors=True)

    def med(levels: list[Level], field: str) -> float:
        return statistics.median(getattr(level, field) for level in levels)

    print(f"\nInteractive load alone and while a batch job runs (medians of {args.runs} interleaved runs, "
          f"{args.threads} threads, {args.tokens} new tokens per request)\n")
    print("| load | TTFT p50 alone / with batch | ratio | TTFT p99 alone / with batch | ratio "
          "| tokens/s alone / with batch | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in loads:
        a, b = alone[name], loaded[name]
        row = [name]
        for field, unit in (("ttft_p50", "ms"), ("ttft_p99", "ms"), ("tokens_per_s", "")):
            scale = 1000 if unit else 1
            x, y = med(a, field) * scale, med(b, field) * scale
            row += [f"{x:.0f} / {y:.0f}{' ' + unit if unit else ''}", f"{y / x:.2f}"]
        print("| " + " | ".join(row) + " |")
    print(f"\nBatch output (lines of 64 tokens): {statistics.median(idle_rates) * 64:.0f} tokens/s alone, "
          f"{statistics.median(busy_rates) * 64:.0f} tokens/s under the interactive loads above")


if __name__ == "__main__":
    main()
