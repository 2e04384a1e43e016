"""Alizé as a gateway in front of two llama.cpp servers (llama-server, built by
benchmarks/build_peers.sh, on the built-in SmolLM2 GGUF), in one run:

- overhead: the same load sent straight to an upstream with 16 slots (so that no request
  queues there: with fewer slots than requests, TTFT is bimodal and its median flips between
  the two modes from one run to the next) and through Alizé to it, interleaved, at
  concurrency 4 and 16: throughput ratio and added TTFT p50;
- prefix affinity: four tenants (four workspaces), each with its own ~1,500-token system
  prompt, sending one request after another at once; TTFT p50 with prefix-affinity and with
  round-robin over A and B, interleaved. Each replica caches what its `--parallel` slots (3)
  hold and nothing in host memory (`--cache-ram 0`): like a GPU engine's prefix cache, each
  replica holds fewer prompts than there are tenants, the fleet holds them all. (With
  llama-server's default 8 GiB host-memory prompt cache, every replica keeps every tenant's
  prompt and the two policies measure alike: 0.94x in one run.)
- failover: steady load over A and B for --failover-seconds; A is killed (-9) a quarter of
  the way in and started again 20 s later: failed requests among those not yet streaming,
  streams cut, and how long after A answers its health check the gateway uses it again.

Every request sends the same explicit sampler settings. Prints a Markdown table (medians
of per-run ratios) for docs/benchmarks.md.

    benchmarks/upstream.py --runs 3
"""

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench import BANNED, free_port, one_request, percentile, serve, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
ALIZE = str(ROOT / ".venv/bin/alize")
TENANTS = 4
SAMPLER = {"temperature": 0, "top_p": 1, "repetition_penalty": 1.0, "repeat_penalty": 1.0}

REGISTRY = """
replace_builtin = true
[backends.a]
kind = "upstream"
url = "http://127.0.0.1:{a}/v1"
model = "smollm2"
health_path = "/health"
context_length = 8192
[backends.b]
kind = "upstream"
url = "http://127.0.0.1:{b}/v1"
model = "smollm2"
health_path = "/health"
context_length = 8192
[backends.wide]
kind = "upstream"
url = "http://127.0.0.1:{wide}/v1"
model = "smollm2"
health_path = "/health"
context_length = 8192
[backends.instant]
kind = "upstream"
url = "http://127.0.0.1:{instant}/v1"
model = "instant"
health_path = "/health"
context_length = 8192
[[models]]
id = "only-wide"
backend = "wide"
[[models]]
id = "instant"
backend = "instant"
[[models]]
id = "affinity"
backends = ["a", "b"]
routing = "prefix-affinity"
[[models]]
id = "round-robin"
backends = ["a", "b"]
routing = "round-robin"
"""


def body(model: str, messages: list[dict], max_tokens: int) -> dict:
    return {"model": model, "stream": True, "max_tokens": max_tokens, "logit_bias": BANNED, "messages": messages,
            "stream_options": {"include_usage": True}, **SAMPLER}


async def load(base: str, key: str, model: str, concurrency: int, num_tokens: int, tag: str,
               requests: int = 0) -> tuple[float, float]:
    """(throughput in tokens/s, TTFT p50 in s) of `requests` (default max(16, 2 x concurrency))."""
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600,
                                 limits=limits) as client:
        todo = list(range(requests or max(16, 2 * concurrency)))
        results: list[tuple[float, float, int]] = []

        async def worker() -> None:
            while todo:
                i = todo.pop()
                messages = [{"role": "user", "content": f"[{tag} {i}] Tell me about the number {i}."}]
                results.append(await one_request(client, body(model, messages, num_tokens)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return sum(r[2] for r in results) / wall, percentile([r[0] for r in results], 0.5)


def system_prompt(tenant: int, tag: str) -> str:
    rules = " ".join(f"Rule {i}: answer tenant {tenant}'s customers kindly, precisely and briefly about topic {i}."
                     for i in range(75))
    return f"[{tag}] You are the assistant of tenant {tenant}. {rules}"


async def affinity(base: str, keys: list[str], model: str, tag: str, rounds: int, seed: int) -> float:
    """TTFT p50: each tenant sends `rounds` requests one after another, with a random pause
    (0-300 ms, the same for both policies) between them, all tenants at once. (Without the
    pauses the four tenants move in lockstep, and a global round-robin then sends each tenant
    to the same replica every time: affinity by accident.)"""
    ttfts: list[float] = []

    async def tenant(t: int) -> None:
        pauses = random.Random(seed * 100 + t)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {keys[t]}"},
                                     timeout=600) as client:
            system = system_prompt(t, tag)
            for r in range(rounds):
                await asyncio.sleep(pauses.uniform(0, 0.3))
                messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Question {r}?"}]
                ttfts.append((await one_request(client, body(model, messages, 4)))[0])

    await asyncio.gather(*(tenant(t) for t in range(len(keys))))
    return percentile(ttfts, 0.5)


class Upstream:
    """A llama-server process that can be killed (-9) and started again on its port."""

    def __init__(self, peers: Path, model: Path, args: argparse.Namespace, log: Path, parallel: int | None = None):
        self.port, self.log = free_port(), log
        slots = parallel or args.parallel
        self.cmd = [str(peers / "bin/llama-server"), "-m", str(model), "--port", str(self.port),
                    "-t", str(args.threads), "-tb", str(args.threads), "--parallel", str(slots),
                    "-c", str(4096 * slots), "--no-webui", "--cache-ram", "0"]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_healthy(f"http://127.0.0.1:{self.port}/health", self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


async def failover(base: str, key: str, admin_key: str, upstream: Upstream, seconds: float) -> dict:
    """Steady load on "affinity" (A and B); A killed at a quarter of the way, back 20 s later."""
    outcomes = {"ok": 0, "failed_before_streaming": 0, "cut_mid_stream": 0}
    stop = time.monotonic() + seconds
    back: dict[str, float] = {}

    async def worker(w: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            i = 0
            while time.monotonic() < stop:
                i += 1
                messages = [{"role": "user", "content": f"[failover {w}-{i}] Tell me about the number {i}."}]
                began, reason = False, None
                try:
                    async with c.stream("POST", "/v1/chat/completions", json=body("affinity", messages, 24)) as r:
                        if r.status_code != 200:
                            outcomes["failed_before_streaming"] += 1
                            continue
                        async for line in r.aiter_lines():
                            if line.startswith("data: {"):
                                for choice in json.loads(line[6:]).get("choices") or []:
                                    began = began or bool(choice["delta"].get("content"))
                                    reason = choice.get("finish_reason") or reason
                except httpx.HTTPError:
                    reason = "error"
                outcomes["ok" if reason in ("length", "stop") else
                         "cut_mid_stream" if began else "failed_before_streaming"] += 1

    async def chaos() -> None:
        await asyncio.sleep(seconds / 4)
        upstream.kill()
        await asyncio.sleep(20)
        await asyncio.to_thread(upstream.start)
        healthy = time.monotonic()
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {admin_key}"}) as admin:
            served_before = None
            while time.monotonic() < stop:
                status = (await admin.get("/admin/v1/backends")).json()["data"]
                a = next(r for m in status if m["model"] == "affinity" for r in m["replicas"] if r["name"] == "a")
                served_before = a["served"] if served_before is None else served_before
                if a["served"] > served_before:
                    back["s"] = time.monotonic() - healthy
                    return
                await asyncio.sleep(0.25)

    await asyncio.gather(chaos(), *(worker(w) for w in range(8)))
    return {**outcomes, "back_in_use_s": back.get("s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads of each llama-server")
    parser.add_argument("--parallel", type=int, default=3, help="slots (cached prompts) of each llama-server")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6, help="requests of each tenant, per policy and run")
    parser.add_argument("--failover-seconds", type=float, default=120)
    parser.add_argument("--parts", nargs="+", default=["cost", "overhead", "affinity", "failover"],
                        choices=["cost", "overhead", "affinity", "failover"])
    parser.add_argument("--cost-requests", type=int, default=200, help="requests per level and run (cost)")
    args = parser.parse_args()
    peers = Path(subprocess.run([str(ROOT / "benchmarks/build_peers.sh")], capture_output=True, text=True,
                                check=True).stdout.strip())
    from alize.services.models import builtin_chat_file

    model = builtin_chat_file()  # the file Alizé serves: every engine gets the same
    logs = Path(tempfile.mkdtemp(prefix="alize-upstream-bench-"))
    data = logs / "data"
    with ExitStack() as stack:
        a, b = Upstream(peers, model, args, logs / "a.log"), Upstream(peers, model, args, logs / "b.log")
        wide = Upstream(peers, model, args, logs / "wide.log", parallel=16)
        for upstream in (a, b, wide):
            upstream.start()
            stack.callback(upstream.stop)
        config = logs / "models.toml"
        instant_port = free_port()  # answers at once: what the gateway adds is its own cost
        instant = subprocess.Popen([sys.executable, str(ROOT / "benchmarks/instant_upstream.py"), str(instant_port),
                                    str(args.tokens)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(instant.kill)
        wait_healthy(f"http://127.0.0.1:{instant_port}/health", instant, 30)
        config.write_text(REGISTRY.format(a=a.port, b=b.port, wide=wide.port, instant=instant_port))
        env = {**os.environ, "ALIZE_CONFIG_FILE": str(config)}

        def alize(*words: str) -> str:
            return subprocess.run([ALIZE, *words, "--data-dir", str(data)], capture_output=True, text=True,
                                  check=True, env=env).stdout.strip()

        for t in range(TENANTS):
            alize("workspaces", "create", f"tenant-{t}")
        keys = [alize("keys", "create", "--name", "bench", "--workspace", f"tenant-{t}") for t in range(TENANTS)]
        admin = alize("keys", "create", "--name", "bench-admin", "--admin")
        port = free_port()
        gateway = f"http://127.0.0.1:{port}"
        stack.enter_context(serve([ALIZE, "serve", "--port", str(port), "--data-dir", str(data)],
                                  gateway + "/health", env, logs / "alize.log"))
        direct = f"http://127.0.0.1:{wide.port}"
        asyncio.run(load(direct, "none", "only-wide", 1, 4, "warmup"))
        asyncio.run(load(gateway, keys[0], "only-wide", 1, 4, "warmup"))
        overhead: dict[int, list[tuple[float, float]]] = {4: [], 16: []}
        cost: dict[int, list[float]] = {1: [], 4: [], 16: []}
        prefix: list[tuple[float, float]] = []
        for run in range(args.runs):
            for c in ((1, 4, 16) if "cost" in args.parts else ()):
                ttft = {}
                order = [("direct", f"http://127.0.0.1:{instant_port}", "none"), ("gateway", gateway, keys[0])]
                for name, base, k in (order if run % 2 == 0 else order[::-1]):
                    print(f"run {run + 1}: instant upstream, {name} at concurrency {c}", file=sys.stderr, flush=True)
                    ttft[name] = asyncio.run(load(base, k, "instant", c, args.tokens, f"cost-{run}",
                                                  args.cost_requests))[1]
                cost[c].append(ttft["gateway"] - ttft["direct"])
            for c in ((4, 16) if "overhead" in args.parts else ()):
                order = [("direct", direct, "none"), ("gateway", gateway, keys[0])]
                measured = {}
                for name, base, k in (order if run % 2 == 0 else order[::-1]):
                    print(f"run {run + 1}: {name} at concurrency {c}", file=sys.stderr, flush=True)
                    # each its own prompts (of the same length): the upstream's prompt cache
                    # must not favour whichever goes second
                    measured[name] = asyncio.run(load(base, k, "only-wide", c, args.tokens, f"run-{run}-{c}-{name[0]}"))
                overhead[c].append((measured["gateway"][0] / measured["direct"][0],
                                    measured["gateway"][1] - measured["direct"][1]))
            if "affinity" not in args.parts:
                continue
            policies = ["affinity", "round-robin"] if run % 2 == 0 else ["round-robin", "affinity"]
            p50 = {}
            for policy in policies:
                print(f"run {run + 1}: four tenants, {policy}", file=sys.stderr, flush=True)
                p50[policy] = asyncio.run(affinity(gateway, keys, policy, f"{policy[:2]}-{run}", args.rounds, run))
            prefix.append((p50["affinity"], p50["round-robin"]))
            print(f"  TTFT p50 affinity {p50['affinity'] * 1000:.0f} ms, round-robin {p50['round-robin'] * 1000:.0f} ms",
                  file=sys.stderr, flush=True)
        failed = None
        if "failover" in args.parts:
            print("failover: kill -9 of replica a under load", file=sys.stderr, flush=True)
            failed = asyncio.run(failover(gateway, keys[0], admin, a, args.failover_seconds))
    print(report(overhead, prefix, failed, args, cost))


def report(overhead: dict[int, list[tuple[float, float]]], prefix: list[tuple[float, float]], failed: dict | None,
           args: argparse.Namespace, cost: dict[int, list[float]]) -> str:
    med = statistics.median
    lines = [f"Runs: {args.runs}; llama-server x2 (routing, failover), {args.threads} thread(s) and {args.parallel} "
             f"slots each, and one with 16 slots (overhead); "
             f"{args.tokens} tokens per request; medians of per-run ratios.", "",
             "| measure | result | target |", "|---|---|---|"]
    for c, added in cost.items():
        if added:
            lines.append(f"| added TTFT p50 in front of an instant upstream (the gateway's own cost), c={c} | "
                         f"{med(added) * 1000:+.1f} ms | ≤ 5 ms |")
    for c, runs in overhead.items():
        if runs:
            lines.append(f"| throughput through Alizé / direct, c={c} | {med(r[0] for r in runs):.3f}x | ≥ 0.98x |")
            lines.append(f"| added TTFT p50, c={c} | {med(r[1] for r in runs) * 1000:+.1f} ms | ≤ 5 ms |")
    if prefix:
        aff, rr = med(p[0] for p in prefix), med(p[1] for p in prefix)
        lines.append(f"| TTFT p50, 4 tenants x 1,500-token system prompt: prefix-affinity / round-robin | "
                     f"{aff * 1000:.0f} / {rr * 1000:.0f} ms = {med(p[0] / p[1] for p in prefix):.2f}x | ≤ 0.5x |")
    if failed is not None:
        total = sum(v for k, v in failed.items() if k != "back_in_use_s")
        lines.append(f"| failover ({args.failover_seconds:.0f} s, kill -9 of one replica): failed before streaming | "
                     f"{failed['failed_before_streaming']} of {total} | 0 |")
        lines.append(f"| streams cut by the kill (ended with an error event) | {failed['cut_mid_stream']} | — |")
        back = failed["back_in_use_s"]
        lines.append(f"| replica back in use after its return | {'not seen' if back is None else f'{back:.1f} s'} "
                     f"| ≤ 15 s |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
