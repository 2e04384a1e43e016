"""How fast the console's pages render on a year of traffic: 1,000,000 usage records (365
days, 4 workspaces, 40 keys, 5 models, 3 endpoints) written into a fresh SQLite or
PostgreSQL database, a real `alize serve` on it, a signed-in session, and each page
fetched over HTTP repeatedly (median and p95 of the whole request, server-side render
included). The issue's target: the usage page under 300 ms on both databases.

    .venv/bin/python benchmarks/console_usage.py --rows 1000000 --databases sqlite postgresql

The records are bulk-inserted, then rolled up at once (store/rollups.py rebuild); the tests
check that records written one by one keep the roll-ups equal to the records."""

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alize.store import accounts, rollups  # noqa: E402
from alize.store.db import Database  # noqa: E402
from alize.store.tables import UsageRecord  # noqa: E402
from tests.console_helpers import signed_in  # noqa: E402
from tests.databases import postgres_database  # noqa: E402
from tests.server import start_server  # noqa: E402

MODELS = [("mistral-small-latest", 0.25, 0.30), ("mistral-tiny", 0.15, 0.20), ("mistral-large-latest", 2.0, 6.0),
          ("mistral-medium-latest", 0.5, 0.65), ("mistral-embed", 0.1, 0.0)]
ENDPOINTS = ["chat.completions", "fim.completions", "embeddings"]
PAGES = ["/console/", "/console/?start={year_ago}", "/console/costs", "/console/workspaces", "/console/keys"]


def fill(url: str, rows: int) -> str:
    """Writes the records; returns an org admin key's secret."""
    db = Database(url)
    db.migrate()
    keys = []
    for w in range(4):
        accounts.create_workspace(db, f"team-{w}", accounts.Limits(monthly_tokens=10**9, monthly_budget_nano=10**11))
        keys += [accounts.create_key(db, accounts.NewKey(f"app-{w}-{k}", workspace=f"team-{w}"))[0]
                 for k in range(10)]
    _, admin = accounts.create_key(db, accounts.NewKey("bench-admin", is_admin=True))
    rng = random.Random(1)
    now = datetime.now(UTC)
    started = time.perf_counter()
    batch = []
    with db.engine.begin() as connection:
        for i in range(rows):
            key = keys[rng.randrange(len(keys))]
            model, p_in, p_out = MODELS[rng.randrange(len(MODELS))]
            moment = now - timedelta(seconds=rng.randrange(365 * 86400))
            prompt, completion = rng.randint(50, 3000), rng.randint(0, 800)
            batch.append({"id": uuid.uuid4().hex, "created_at": moment, "day": moment.date().isoformat(),
                          "workspace_id": key.workspace.id, "key_id": key.id, "model": model,
                          "endpoint": ENDPOINTS[rng.randrange(3)], "status": 429 if i % 50 == 0 else 200,
                          "prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": 0,
                          "cost_nano": round((prompt * p_in + completion * p_out) * 1e6), "latency_ms": 100})
            if len(batch) == 20_000:
                connection.execute(insert(UsageRecord), batch)
                batch = []
        if batch:
            connection.execute(insert(UsageRecord), batch)
    rollups.rebuild(db)
    with db.engine.begin() as connection:
        daily = connection.execute(text("SELECT COUNT(*) FROM usage_daily")).scalar_one()
    print(f"  {rows:,} records ({daily:,} roll-up rows) written in {time.perf_counter() - started:.0f} s", flush=True)
    db.close()
    return admin


def measure(url: str, admin: str, runs: int) -> dict[str, list[float]]:
    client, _ = signed_in(url, admin)
    year_ago = (datetime.now(UTC).date() - timedelta(days=364)).isoformat()
    out: dict[str, list[float]] = {}
    try:
        for path in PAGES:
            path = path.format(year_ago=year_ago)
            assert client.get(path).status_code == 200, path  # warm-up
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            out[path] = times
    finally:
        client.close()
    return out


def run(kind: str, rows: int, runs: int) -> dict[str, list[float]]:
    print(f"{kind}:", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "sqlite":
            data = Path(tmp)
            admin = fill(f"sqlite:///{data / 'alize.db'}", rows)
            server = start_server(data, create_keys=False)
            try:
                return measure(server.url, admin, runs)
            finally:
                server.stop()
        with postgres_database() as db_url:
            admin = fill(db_url, rows)
            server = start_server(Path(tmp), {"ALIZE_DATABASE_URL": db_url}, create_keys=False)
            try:
                return measure(server.url, admin, runs)
            finally:
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    results = {kind: run(kind, args.rows, args.runs) for kind in args.databases}
    print(f"\n| page ({args.rows:,} usage records) | " + " | ".join(
        f"{k} median | {k} p95" for k in args.databases) + " |")
    print("|---|" + "---|---|" * len(args.databases))
    for path in next(iter(results.values())):
        cells = []
        for kind in args.databases:
            times = sorted(results[kind][path])
            cells += [f"{statistics.median(times):.0f} ms", f"{times[int(len(times) * 0.95) - 1]:.0f} ms"]
        print(f"| `{path.split('?')[0]}{'?start=<a year ago>' if '?' in path else ''}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
