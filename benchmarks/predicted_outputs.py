"""Predicted outputs on a copy-heavy edit: one `alize serve` on the built-in model, asked to
rename a function in a file of about 1,000 tokens at temperature 0 (the reply's start is
given: a code fence and the first function renamed; every request computes its prompt),
without a prediction and with three: the model's own answer (every draft holds: the
mechanism's ceiling on this machine), the file renamed (what an editor would send; how much
of it the model copies is the model's), and a wrong one (unrelated prose). Each case is
timed right beside a request without a prediction, the pair's order and the cases' order
alternated from run to run (this machine's speed drifts by ±10% within a minute); prints the
median of the per-pair time ratios, end to end and from the first text on (the prompt, about 1,100
tokens, computed alike with or without), and whether every answer is the same text.

    benchmarks/predicted_outputs.py --runs 5 [--prompt-lookup]

With --prompt-lookup a second server drafts from the prompt when there is no prediction
(ALIZE_PROMPT_LOOKUP), paired the same way with the first server answering without one."""

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench import alize_server

NAMES = ["orders", "prices", "items", "customers", "invoices", "payments", "refunds", "coupons", "carts", "taxes",
         "fees", "credits", "returns", "shipments"]


def source_file(function: str) -> str:
    """A Python module of about 1,000 tokens that calls `function` here and there."""
    parts = [f"def {function}(values):\n    total = 0\n    for value in values:\n        total += value\n"
             "    return total\n"]
    for i, name in enumerate(NAMES):
        parts.append(
            f"def report_{name}(rows, limit={i + 2}):\n"
            f"    \"\"\"Sum the {name} of each row, keeping at most limit rows.\"\"\"\n"
            f"    kept = [row['{name}'] for row in rows[:limit]]\n"
            f"    if not kept:\n        return 0\n"
            f"    return {function}(kept) / len(kept)\n")
    return "\n\n".join(parts)


ORIGINAL, RENAMED = source_file("compute_total"), source_file("sum_values")
WRONG = "\n".join(f"The {name} chapter tells a story of {NAMES[(i + 3) % len(NAMES)]} and rivers." for i, name in
                  enumerate(NAMES * 3))
PROMPT = ("Rename the function compute_total to sum_values everywhere in this file. Reply with the whole file "
          f"and nothing else.\n\n```python\n{ORIGINAL}\n```")


def alize(logs: Path, threads: int, prompt_lookup: bool):
    # every request computes its prompt, as a client's first edit of a file would: over a cached
    # prompt the built-in model takes another turn here (it rewrites the functions, then loops)
    env = {"ALIZE_THREADS": str(threads), "ALIZE_PROMPT_LOOKUP": str(prompt_lookup).lower(),
           "ALIZE_PREFIX_CACHE": "off"}
    return alize_server(env, logs / f"alize-predicted-{prompt_lookup}.log")


FIRST = RENAMED.split("\n\n\n")[0] + "\n\n\n"  # the reply's start, given: the built-in model then copies
REST = RENAMED[len(FIRST):] + "\n```"  # what an editor would predict after it


def ask(base: str, key: str, prediction: str | None, max_tokens: int) -> tuple[float, float, str, dict]:
    """(seconds to the first text, seconds in all, the answer, usage) of one streamed request."""
    messages = [{"role": "user", "content": PROMPT},
                {"role": "assistant", "content": "```python\n" + FIRST, "prefix": True}]
    body = {"model": "mistral-small-latest", "messages": messages, "temperature": 0, "max_tokens": max_tokens,
            "stream": True}
    if prediction is not None:
        body["prediction"] = {"type": "content", "content": prediction}
    started, first, parts, usage = time.perf_counter(), None, [], {}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                if choice["delta"].get("content"):
                    first = first or time.perf_counter() - started
                    parts.append(choice["delta"]["content"])
    return first or 0.0, time.perf_counter() - started, "".join(parts), usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=1200)
    parser.add_argument("--prompt-lookup", action="store_true")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="alize-predicted-bench-"))
    labels = {"own": "the answer itself as the prediction", "right": "the file renamed as the prediction",
              "wrong": "a wrong prediction", "lookup": "prompt lookup, no prediction"}
    predictions = {"own": "", "right": REST, "wrong": WRONG}  # "without" and "lookup" send none
    ratios: dict[str, list[float]] = {name: [] for name in labels if name != "lookup" or args.prompt_lookup}
    after_first: dict[str, list[float]] = {name: [] for name in ratios}  # the same, from the first text on
    texts: set[str] = set()
    with ExitStack() as stack:
        # each server warmed up before the next starts: its engine prices drafts by timing steps
        # when it starts (runner.step_cost), which another server loading beside it would skew
        plain = stack.enter_context(alize(logs, args.threads, False))
        ask(*plain, None, 8)
        looking = stack.enter_context(alize(logs, args.threads, True)) if args.prompt_lookup else None
        if looking:
            ask(*looking, None, 8)
        predictions["own"] = ask(*plain, None, args.max_tokens)[2].removeprefix("```python\n" + FIRST)
        for run in range(args.runs):
            order = list(ratios) if run % 2 == 0 else list(reversed(ratios))
            for i, name in enumerate(order):
                seconds, decoding = {}, {}
                for side in ("without", name) if (run + i) % 2 == 0 else (name, "without"):
                    server = looking if side == "lookup" else plain
                    first, took, text, usage = ask(*server, predictions.get(side), args.max_tokens)
                    seconds[side], decoding[side] = took, took - first
                    texts.add(text)
                    details = usage.get("completion_tokens_details") or {}
                    print(f"run {run + 1}, {name} pair, {side}: {took:.2f} s ({first:.2f} s to the first text), "
                          f"{usage['completion_tokens']} tokens, "
                          f"accepted {details.get('accepted_prediction_tokens')}, rejected "
                          f"{details.get('rejected_prediction_tokens')}", file=sys.stderr, flush=True)
                ratios[name].append(seconds["without"] / seconds[name])
                after_first[name].append(decoding["without"] / decoding[name])
    print(f"answers identical in every case and run: {len(texts) == 1}")
    for name, found in ratios.items():
        print(f"| {labels[name]}: speed-up over no prediction | {statistics.median(found):.2f}x "
              f"(pairs: {', '.join(f'{r:.2f}' for r in found)}) | after the first text: "
              f"{statistics.median(after_first[name]):.2f}x |")

if __name__ == "__main__":
    main()
