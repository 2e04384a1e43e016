"""A conversation's next turn after new conversations that share its system prompt, on
servers already running: how much of the turn's prompt is still cached, and its time to the
first token. Each round: a first turn with a long user message, `--others` new conversations
with the same system prompt, then the first conversation's next turn (greedy, one token).

    .venv/bin/python benchmarks/conversation_turns.py --key alz-... \
        before=http://127.0.0.1:8401 after=http://127.0.0.1:8402 [--rounds 2] [--others 3]

Servers are taken in turn within each round; each round uses new prompts."""

import argparse
import statistics
import time

import httpx

SYSTEM = "You are a museum guide. Answer in one short sentence, naming the room."
VISIT = "Here is my visit so far. " + " ".join(f"I saw room {i} and its paintings." for i in range(40))


def chat(url: str, key: str, messages: list[dict]) -> tuple[float, dict]:
    started = time.perf_counter()
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=300, json={
        "model": "mistral-small-latest", "temperature": 0, "max_tokens": 1,
        "messages": [{"role": "system", "content": SYSTEM}, *messages]})
    r.raise_for_status()
    return time.perf_counter() - started, r.json()


def next_turn(url: str, key: str, tag: str, others: int) -> tuple[float, int, int]:
    """(seconds, prompt tokens, cached tokens) of the first conversation's next turn."""
    first = [{"role": "user", "content": f"[{tag}] {VISIT}"}]
    _, answer = chat(url, key, first)
    for i in range(others):
        chat(url, key, [{"role": "user", "content": f"[{tag} {i}] Where are the maps?"}])
    seconds, again = chat(url, key, [*first, {"role": "assistant", "content": answer["choices"][0]["message"]["content"]},
                                     {"role": "user", "content": "Which room was the last?"}])
    usage = again["usage"]
    return seconds, usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("servers", nargs="+", help="name=base URL")
    parser.add_argument("--key", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--others", type=int, default=3)
    args = parser.parse_args()
    servers = dict(s.split("=", 1) for s in args.servers)
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in servers}
    for round_ in range(args.rounds):
        for name, url in servers.items():
            results[name].append(next_turn(url, args.key, f"{name} {round_} {time.time_ns()}", args.others))
    print(f"| server | next turn's prompt tokens | cached | time to first token (median of {args.rounds}) |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        print(f"| {name} | {runs[0][1]} | {statistics.median(r[2] for r in runs)} | "
              f"{1000 * statistics.median(r[0] for r in runs):.0f} ms |")


if __name__ == "__main__":
    main()
