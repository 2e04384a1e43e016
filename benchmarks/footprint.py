"""Alizé's resident memory: idle once started, then after serving long requests.

    .venv/bin/python benchmarks/footprint.py [--threads 2] [--requests 8] [--prompt-words 1100]

For each KV layout (a buffer per sequence, the default; one pool, ALIZE_KV_LAYOUT=pool),
starts `alize serve` with everything else at its defaults (built-in chat and embedding
models, SQLite, a data dir of its own) and reads its resident set (VmRSS) from /proc: once it
answers, after one embedding request, and after --requests concurrent chat requests with
distinct long prompts (32 new tokens each). The layouts run one after the other.
"""

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench import alize_server

WORDS = ("river", "copper", "lantern", "orchard", "granite", "meadow", "harbor", "violet", "thunder", "saddle")


def server_pid(base: str) -> int:
    """The pid of the process serving on base's port (read from /proc: no psutil needed)."""
    port = base.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"serve" in args and port.encode() in args:
            return int(entry.name)
    raise RuntimeError(f"no process serves {base}")


def resident_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def long_prompt(i: int, words: int) -> str:
    text = " ".join(WORDS[(i * 7 + j * (i + 3)) % len(WORDS)] for j in range(words))
    return f"Document {i}: {text}\n\nSummarise document {i} in one sentence."


async def long_requests(base: str, key: str, count: int, words: int) -> list[int]:
    """Prompt tokens of `count` concurrent chat requests, each with a distinct long prompt."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
        async def one(i: int) -> int:
            r = await client.post("/v1/chat/completions", json={
                "model": "mistral-small-latest", "max_tokens": 32, "temperature": 0,
                "messages": [{"role": "user", "content": long_prompt(i, words)}]})
            r.raise_for_status()
            return r.json()["usage"]["prompt_tokens"]
        return list(await asyncio.gather(*(one(i) for i in range(count))))


def measure(layout: str, args, logs: Path) -> dict[str, float | int]:
    env = {"ALIZE_THREADS": str(args.threads), "ALIZE_KV_LAYOUT": layout}
    with alize_server(env, logs / f"alize-footprint-{layout}.log") as (base, key):
        pid = server_pid(base)
        idle = resident_mb(pid)
        r = httpx.post(f"{base}/v1/embeddings", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                       json={"model": "mistral-embed", "input": ["a first text to embed"]})
        r.raise_for_status()
        embedded = resident_mb(pid)
        prompts = asyncio.run(long_requests(base, key, args.requests, args.prompt_words))
        return {"idle": idle, "embedded": embedded, "loaded": resident_mb(pid), "prompt_tokens": min(prompts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prompt-words", type=int, default=1100)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="alize-footprint-"))
    rows = {layout: measure(layout, args, logs) for layout in ("per-sequence", "pool")}
    tokens = min(int(row["prompt_tokens"]) for row in rows.values())
    print(f"\n| KV layout | idle, once ready | after one embedding | after {args.requests} requests of "
          f"{tokens:,}+ prompt tokens |")
    print("|---|---|---|---|")
    for layout, row in rows.items():
        print(f"| {layout} | {row['idle']:.0f} MB | {row['embedded']:.0f} MB | {row['loaded']:.0f} MB |")
    print(f"\nlogs: {logs}")


if __name__ == "__main__":
    main()
