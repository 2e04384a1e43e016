"""Alizé against its peers, side by side in one run on the same machine, model and threads.

    .venv/bin/python benchmarks/bench.py [--runs 3] [--threads 2]

Peers (built once by benchmarks/build_peers.sh into ~/.cache/alize/peers): llama.cpp's
llama-server and llama-bench from the llama.cpp sources vendored in the same
llama-cpp-python release, and llama-cpp-python's own server. Load: streaming chat, distinct
prompts, 64 new tokens each (end-of-sequence tokens banned with logit_bias so every server
generates the same count), at each concurrency level. In each run every server is up and
each level runs on each server in turn. Prints medians over the runs and the ratios
Alizé/peer (the median of the runs' ratios); --json writes the raw numbers.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BANNED = {"0": -100, "2": -100}  # <|endoftext|>, <|im_end|> of the built-in SmolLM2
# what every server is sent to sample with: greedy, or with --temperature the full
# distribution (no top-k, top-p or min-p: Mistral's semantics, which llama-server's defaults
# would otherwise cut to 40 tokens)
SAMPLER: dict[str, float] = {"temperature": 0}


@dataclass
class Level:
    concurrency: int
    tokens_per_s: float
    ttft_p50: float
    ttft_p99: float
    latency_p50: float
    latency_p99: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout} s")


@contextmanager
def serve(cmd: list[str], health: str, env: dict[str, str] | None = None, log: Path | None = None):
    out = open(log or os.devnull, "wb")
    process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_healthy(health, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        out.close()


@contextmanager
def alize_server(env: dict[str, str], log: Path):
    """An `alize serve` on the built-in model with a data dir of its own: (base URL, API key)."""
    alize = str(ROOT / ".venv/bin/alize")
    data = Path(tempfile.mkdtemp(prefix="alize-bench-"))
    key = subprocess.run([alize, "keys", "create", "--name", "bench", "--data-dir", str(data)], capture_output=True,
                         text=True, check=True).stdout.strip()
    port = free_port()
    with serve([alize, "serve", "--port", str(port), "--data-dir", str(data)], f"http://127.0.0.1:{port}/health",
               env, log):
        yield f"http://127.0.0.1:{port}", key
    shutil.rmtree(data, ignore_errors=True)


async def one_request(client: httpx.AsyncClient, body: dict) -> tuple[float, float, int]:
    """(TTFT, latency, completion tokens) of one streamed chat completion."""
    started = time.perf_counter()
    ttft, tokens, usage_tokens = None, 0, None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage_tokens = chunk["usage"].get("completion_tokens")
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        tokens += 1
                        if ttft is None:
                            ttft = time.perf_counter() - started
    except httpx.HTTPError:
        # llama-cpp-python's server cuts running streams short under concurrency (its
        # default interrupt_requests): count only the tokens that arrived.
        usage_tokens = None
    return ttft or 0.0, time.perf_counter() - started, usage_tokens or tokens


def request_body(tag: str, i: int, num_tokens: int) -> dict:
    return {"model": "mistral-small-latest", "stream": True, "max_tokens": num_tokens,
            **SAMPLER, "logit_bias": BANNED, "stream_options": {"include_usage": True},
            # the same sampler chain everywhere: no repetition penalty (Alizé's field, and the
            # llama.cpp servers' name for it)
            "repetition_penalty": 1.0, "repeat_penalty": 1.0,
            "messages": [{"role": "user", "content": f"[{tag} {i}] Tell me about the number {i}."}]}


async def paired(up: dict[str, tuple[str, str]], pairs: int, num_tokens: int, tag: str) -> dict[str, float]:
    """One stream, request by request, the servers alternated A B, B A, A B...: drift within
    the run (this machine's speed moves ±5% in seconds) falls on both sides alike. Returns
    each server's tokens per second of its requests' time."""
    clients = {name: httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600)
               for name, (base, key) in up.items()}
    tokens = dict.fromkeys(up, 0)
    seconds = dict.fromkeys(up, 0.0)
    try:
        for i in range(pairs):
            for name in (list(up) if i % 2 == 0 else list(up)[::-1]):
                _, latency, count = await one_request(clients[name], request_body(tag, i, num_tokens))
                tokens[name] += count
                seconds[name] += latency
    finally:
        for client in clients.values():
            await client.aclose()
    return {name: tokens[name] / seconds[name] for name in up}


async def load(base: str, key: str, concurrency: int, num_tokens: int, tag: str) -> Level:
    num_requests = max(4, 2 * concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600, limits=limits) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(num_requests):
            queue.put_nowait(i)
        results: list[tuple[float, float, int]] = []

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                results.append(await one_request(client, request_body(tag, i, num_tokens)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ttfts = [r[0] for r in results]
    lats = [r[1] for r in results]
    return Level(concurrency, sum(r[2] for r in results) / wall, percentile(ttfts, 0.5), percentile(ttfts, 0.99),
                 percentile(lats, 0.5), percentile(lats, 0.99))


async def prefix_ttft(base: str, key: str, tag: str) -> tuple[float, float]:
    """TTFT with a ~1,500-token system prompt: first request (cold), then a second one (warm)."""
    system = f"[{tag}] " + " ".join(f"Rule {i}: be kind, precise and brief about topic {i}." for i in range(110))
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
        times = []
        for question in ("What is rule 3?", "What is rule 7?"):
            body = {"model": "mistral-small-latest", "stream": True, "max_tokens": 4, "temperature": 0,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
            times.append((await one_request(client, body))[0])
    return times[0], times[1]


def run_suite(servers: dict[str, Callable], levels: list[int], num_tokens: int, run: int,
              pairs: int = 0) -> dict[str, dict]:
    """One run: every server up at once (idle ones cost nothing), each level run on each
    server in turn, so that the servers compared at a level are measured seconds apart
    on this shared, noisy machine rather than minutes apart."""
    with ExitStack() as stack:
        up = {name: stack.enter_context(start()) for name, start in servers.items()}
        out: dict[str, dict] = {name: {"levels": []} for name in up}
        for base, key in up.values():
            asyncio.run(load(base, key, 1, 4, f"warmup-{run}"))
        for c in levels:
            for name, (base, key) in up.items():
                print(f"run {run + 1}: {name} at concurrency {c}", file=sys.stderr, flush=True)
                # The same prompts for every server (each is a fresh process, so none has seen
                # them); new ones each run and level, so no prompt cache carries over.
                out[name]["levels"].append(asyncio.run(load(base, key, c, num_tokens, f"run-{run}-{c}")))
        if pairs:
            print(f"run {run + 1}: one stream, {pairs} requests each, alternated", file=sys.stderr, flush=True)
            for name, rate in asyncio.run(paired(up, pairs, num_tokens, f"paired-{run}")).items():
                out[name]["paired"] = rate
        for name, (base, key) in up.items():
            if name != "llama-cpp-python":  # its server has no prefix cache across requests
                out[name]["prefix"] = asyncio.run(prefix_ttft(base, key, f"run-{run}"))
    return out


def starters(args, peers: Path, model: Path, logs: Path) -> dict[str, Callable]:
    ctx = 8192

    def alize():
        return alize_server({"ALIZE_THREADS": str(args.threads), "ALIZE_PARALLEL": str(args.parallel)},
                            logs / "alize.log")

    @contextmanager
    def llama_server():
        port = free_port()
        cmd = [str(peers / "bin/llama-server"), "-m", str(model), "--port", str(port), "-t", str(args.threads),
               "-tb", str(args.threads), "--parallel", str(args.parallel), "-c", str(ctx * args.parallel),
               "--no-webui"]
        with serve(cmd, f"http://127.0.0.1:{port}/health", log=logs / "llama-server.log"):
            yield f"http://127.0.0.1:{port}", "none"

    @contextmanager
    def llama_cpp_python():
        port = free_port()
        cmd = [str(peers / "lcp-venv/bin/python"), "-m", "llama_cpp.server", "--model", str(model), "--port",
               str(port), "--n_threads", str(args.threads), "--n_ctx", str(ctx), "--model_alias",
               "mistral-small-latest"]
        with serve(cmd, f"http://127.0.0.1:{port}/v1/models", log=logs / "llama-cpp-python.log"):
            yield f"http://127.0.0.1:{port}", "none"

    return {"alize": alize, "llama-server": llama_server, "llama-cpp-python": llama_cpp_python}


def llama_bench(peers: Path, model: Path, threads: int) -> float:
    out = subprocess.run([str(peers / "bin/llama-bench"), "-m", str(model), "-t", str(threads), "-p", "0",
                          "-n", "128", "-o", "json"], capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)[0]["avg_ts"])


def report(results: dict[str, list[dict]], levels: list[int], bench_tg: list[float]) -> str:
    def level(run: dict, c: int, field: str) -> float:
        return getattr(next(lv for lv in run["levels"] if lv.concurrency == c), field)

    def med(name: str, c: int, field: str) -> float:
        return statistics.median(level(r, c, field) for r in results[name])

    def ratio(name: str, peer: str, c: int, field: str) -> float:
        """The median of the per-run ratios: a run measures both servers at a level seconds
        apart, so the machine's drift over a session cancels out of each ratio."""
        return statistics.median(level(a, c, field) / level(b, c, field)
                                 for a, b in zip(results[name], results[peer], strict=True))

    lines = ["| server | concurrency | output tok/s | TTFT p50 / p99 (s) | latency p50 / p99 (s) |",
             "|---|---|---|---|---|"]
    for name in results:
        for c in levels:
            lines.append(f"| {name} | {c} | {med(name, c, 'tokens_per_s'):.1f} | {med(name, c, 'ttft_p50'):.2f} / "
                         f"{med(name, c, 'ttft_p99'):.2f} | {med(name, c, 'latency_p50'):.2f} / "
                         f"{med(name, c, 'latency_p99'):.2f} |")
    lines += ["", "| ratio Alizé/peer | " + " | ".join(f"c={c} tok/s" for c in levels) + " | TTFT p99 at c="
              f"{levels[-1]} |", "|---|" + "---|" * (len(levels) + 1)]
    for peer in (p for p in results if p != "alize"):
        cells = [f"{ratio('alize', peer, c, 'tokens_per_s'):.2f}x" for c in levels]
        lines.append(f"| {peer} | " + " | ".join(cells) + f" | {ratio('alize', peer, levels[-1], 'ttft_p99'):.2f}x |")
    prefix = [(name, [r["prefix"] for r in results[name] if "prefix" in r]) for name in results]
    lines += ["", "| prefix cache (1,500-token system prompt) | cold TTFT (s) | warm TTFT (s) | warm/cold |",
              "|---|---|---|---|"]
    for name, pairs in prefix:
        if pairs:
            cold = statistics.median(p[0] for p in pairs)
            warm = statistics.median(p[1] for p in pairs)
            lines.append(f"| {name} | {cold:.2f} | {warm:.2f} | {warm / cold:.2f} |")
    if all("paired" in r for r in results["alize"]):
        lines += ["", "| one stream, requests alternated | " + " | ".join(results) + " | ratio Alizé/peer |",
                  "|---|" + "---|" * (len(results) + 1)]
        for peer in (p for p in results if p != "alize"):
            ratios = [a["paired"] / b["paired"] for a, b in zip(results["alize"], results[peer], strict=True)]
            lines.append("| tok/s (median of runs) | " + " | ".join(
                f"{statistics.median(r['paired'] for r in results[n]):.1f}" for n in results)
                + f" | {statistics.median(ratios):.3f}x (runs {', '.join(f'{r:.3f}' for r in ratios)}) |")
    if bench_tg:
        lines += ["", f"llama-bench tg128 (raw single stream): {statistics.median(bench_tg):.1f} tok/s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--servers", nargs="+", default=["alize", "llama-server", "llama-cpp-python"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--paired", type=int, default=0, metavar="N",
                        help="also one stream with the servers alternated request by request, N requests each")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="sample at this temperature (top_p 1, top_k 0, min_p 0); 0: greedy")
    args = parser.parse_args()
    if args.temperature:
        SAMPLER.update(temperature=args.temperature, top_p=1, top_k=0, min_p=0)
    sys.path.insert(0, str(ROOT))
    from alize.services.models import builtin_chat_file

    model = builtin_chat_file()  # the file Alizé serves: every engine gets the same
    peers = Path(subprocess.run([str(ROOT / "benchmarks/build_peers.sh")], capture_output=True, text=True,
                                check=True).stdout.strip().splitlines()[-1])
    logs = Path(tempfile.mkdtemp(prefix="alize-bench-logs-"))
    start = starters(args, peers, model, logs)
    results: dict[str, list[dict]] = {name: [] for name in args.servers}
    bench_tg: list[float] = []
    for run in range(args.runs):
        for name, result in run_suite({n: start[n] for n in args.servers}, args.concurrency, args.tokens,
                                      run, args.paired).items():
            results[name].append(result)
        bench_tg.append(llama_bench(peers, model, args.threads))
    print(f"{model.name}, {args.threads} threads, {args.tokens} tokens per request, sampler {SAMPLER}, "
          f"median of {args.runs} runs (logs: {logs})\n")
    print(report(results, args.concurrency, bench_tg))
    if args.json:
        args.json.write_text(json.dumps({k: [{"levels": [lv.__dict__ for lv in r["levels"]],
                                               "prefix": r.get("prefix"), "paired": r.get("paired")} for r in v]
                                         for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
