"""What a running batch job costs interactive users: the same streaming chat load against one
Alizé server, alternately alone and while a large batch job runs (runs interleaved, so
that the machine's noise falls on both sides alike). Prints medians over the runs of TTFT
p50/p99 and output tokens/s, the ratios with-batch/alone, and the batch's own throughput.

    .venv/bin/python benchmarks/batch_impact.py [--runs 3] [--threads 2] [--concurrency 1 4]
"""

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BANNED, ROOT, Level, free_port, load, serve


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
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per interactive request")
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="alize-batch-bench-"))
    alize = str(ROOT / ".venv/bin/alize")
    key = subprocess.run([alize, "keys", "create", "--name", "bench", "--data-dir", str(data)],
                         capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    alone: dict[int, list[Level]] = {c: [] for c in args.concurrency}
    loaded: dict[int, list[Level]] = {c: [] for c in args.concurrency}
    batch_rates: list[float] = []
    with (serve([alize, "serve", "--port", str(port), "--data-dir", str(data)], f"{base}/health",
                {"ALIZE_THREADS": str(args.threads)}, data / "server.log"),
          httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600) as http):
        asyncio.run(load(base, key, 1, 4, "warmup"))
        for run in range(args.runs):
            for c in args.concurrency:
                alone[c].append(asyncio.run(load(base, key, c, args.tokens, f"alone-{run}-{c}")))
            job_id = start_batch(http, 5000, f"batch-{run}")
            before, started = completed(http, job_id), time.perf_counter()
            for c in args.concurrency:
                loaded[c].append(asyncio.run(load(base, key, c, args.tokens, f"loaded-{run}-{c}")))
            batch_rates.append((completed(http, job_id) - before) / (time.perf_counter() - started))
            stop_batch(http, job_id)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    shutil.rmtree(data, ignore_errors=True)

    def med(levels: list[Level], field: str) -> float:
        return statistics.median(getattr(level, field) for level in levels)

    print(f"\nInteractive load alone and while a batch job runs (medians of {args.runs} interleaved runs, "
          f"{args.threads} threads, {args.tokens} new tokens per request)\n")
    print("| concurrency | TTFT p50 alone / with batch | ratio | TTFT p99 alone / with batch | ratio "
          "| tokens/s alone / with batch | ratio |")
    print("|---|---|---|---|---|---|---|")
    for c in args.concurrency:
        a, b = alone[c], loaded[c]
        row = [f"{c}"]
        for field, unit in (("ttft_p50", "ms"), ("ttft_p99", "ms"), ("tokens_per_s", "")):
            scale = 1000 if unit else 1
            x, y = med(a, field) * scale, med(b, field) * scale
            row += [f"{x:.0f} / {y:.0f}{' ' + unit if unit else ''}", f"{y / x:.2f}"]
        print("| " + " | ".join(row) + " |")
    print(f"\nBatch lines (64 tokens each) completed per second during the loaded phase: "
          f"{statistics.median(batch_rates):.2f}")


if __name__ == "__main__":
    main()
