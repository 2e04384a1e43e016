"""Money and limits under faults: SIGINT/SIGTERM and kill -9 in the middle of streams, on
SQLite and on PostgreSQL + Redis. Streams end cleanly on a shutdown; what a stream
delivered is billed once; no reservation outlives the server that made it; and the
limit counters come back to the usage table's figures."""

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from tests.databases import REDIS_URL, postgres_database, redis_url
from tests.platform_helpers import EOS_BAN, create_key, sqlite_url, usage_rows
from tests.server import Server, start_server

MODEL = "mistral-tiny"  # 0.00015 / 0.0002 EUR per 1,000 tokens
LONG = {"model": MODEL, "stream": True, "max_tokens": 1000, "min_tokens": 1000, "logit_bias": EOS_BAN,
        "messages": [{"role": "user", "content": "Tell a very long story."}]}


class Stream(threading.Thread):
    """One long stream, read until it ends or breaks."""

    def __init__(self, server: Server, key: str, body: dict | None = None):
        super().__init__(daemon=True)
        self.server, self.key, self.body = server, key, body or LONG
        self.chunks: list[dict] = []
        self.is_done = False
        self.broke = False

    def run(self) -> None:
        try:
            with self.server.client(self.key) as client, client.stream("POST", "/v1/chat/completions",
                                                                      json=self.body) as r:
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        self.is_done = True
                    elif line.startswith("data: {"):
                        self.chunks.append(json.loads(line[6:]))
        except httpx.HTTPError:
            self.broke = True

    @property
    def id(self) -> str:
        return self.chunks[0]["id"]


def start_streams(server: Server, key: str, n: int, chunks: int = 6) -> list[Stream]:
    streams = [Stream(server, key) for _ in range(n)]
    for s in streams:
        s.start()
    deadline = time.monotonic() + 120
    while any(len(s.chunks) < chunks for s in streams) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(len(s.chunks) >= chunks for s in streams), "the streams must be under way"
    return streams


def month_counter(key_id: str, what: str) -> int | None:
    with redis.Redis.from_url(REDIS_URL) as r:
        value = r.get(f"alize:key:{key_id}:{what}:{datetime.now(UTC):%Y-%m}")
    return None if value is None else int(value)


def table_totals(url: str, key_id: str) -> tuple[int, int]:
    rows = usage_rows(url, key_id=key_id)
    return sum(r.prompt_tokens + r.completion_tokens for r in rows), sum(r.cost_nano for r in rows)


@contextmanager
def shared_store() -> Iterator[dict[str, str]]:
    with postgres_database() as url:
        yield {"ALIZE_DATABASE_URL": url, "ALIZE_REDIS_URL": redis_url()}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_shutdown_ends_every_stream_cleanly_and_settles(tmp_path: Path, sig: signal.Signals):
    """With no drain time, streams end at once (a last error chunk); docs/operations.md."""
    with shared_store() as env:
        server = start_server(tmp_path / "data", env={**env, "ALIZE_DRAIN_SECONDS": "0"})
        try:
            key = create_key(server, budget_eur=0.005)
            streams = start_streams(server, key["secret"], 3)
            signalled = time.monotonic()
            server.process.send_signal(sig)
            server.process.wait(timeout=20)
            took = time.monotonic() - signalled
            for s in streams:
                s.join(timeout=10)
        finally:
            server.stop()
        log = server.log()
        assert took < 4, f"exit took {took:.1f} s"
        assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
        for s in streams:  # each stream ends with a last chunk and [DONE], not a cut connection
            assert s.is_done and not s.broke
            assert s.chunks[-1]["choices"][0]["finish_reason"] == "error"
            assert s.chunks[-1]["usage"]["completion_tokens"] >= 5
        rows = {r.id: r for r in usage_rows(env["ALIZE_DATABASE_URL"], key_id=key["id"])}
        for s in streams:  # billed once, for what it delivered
            assert rows[s.id].completion_tokens == s.chunks[-1]["usage"]["completion_tokens"]
        # nothing left reserved: the counters are the usage table's figures
        assert (month_counter(key["id"], "tokens"), month_counter(key["id"], "nano")) == \
            table_totals(env["ALIZE_DATABASE_URL"], key["id"])


def test_kill_9_leaves_no_phantom_reservation_and_bills_what_streams_delivered(tmp_path: Path):
    with shared_store() as env:
        url = env["ALIZE_DATABASE_URL"]
        server = start_server(tmp_path / "data", env=env)
        key = create_key(server, budget_eur=0.001)  # four streams reserve ~0.0008 EUR of it
        try:
            streams = start_streams(server, key["secret"], 4, chunks=40)
            # progress is written every second: what a stream had 3 s before the kill is billed for sure
            earlier = {s.id: len(s.chunks) - 1 for s in streams}  # tokens (the first chunk is the role)
            time.sleep(3)
            delivered = {s.id: len(s.chunks) - 1 for s in streams}
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=20)
            for s in streams:
                s.join(timeout=10)
        finally:
            server.stop()
        assert month_counter(key["id"], "nano") > 0.7e6  # (0.0007 EUR) the dead server's reservations, still booked
        restarted = start_server(tmp_path / "data2", env=env, create_keys=False)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                billed = {r.id: r for r in usage_rows(url, key_id=key["id"])}
                counters = (month_counter(key["id"], "tokens"), month_counter(key["id"], "nano"))
                if len(billed) == 4 and counters == table_totals(url, key["id"]):
                    break
                time.sleep(1)
            assert counters == table_totals(url, key["id"]), "the counters must come back to the usage table"
            for stream_id, seen in delivered.items():  # each cut stream billed once, for what it delivered
                row = billed[stream_id]
                assert row.status == 499 and earlier[stream_id] <= row.completion_tokens <= seen + 60, (row, seen)
            # the budget is not blocked by requests that no longer exist: 0.5 EUR of worst case fits
            with restarted.client(key["secret"]) as client:
                probe = {**LONG, "stream": False, "max_tokens": 2500, "min_tokens": 0, "logit_bias": {},
                         "stop": ["."], "messages": [{"role": "user", "content": "Hi."}]}
                r = client.post("/v1/chat/completions", json=probe)
            assert r.status_code == 200, r.text
        finally:
            restarted.stop()


def test_kill_9_on_sqlite_bills_cut_streams_after_the_restart(tmp_path: Path):
    server = start_server(tmp_path / "data")
    try:
        streams = start_streams(server, server.key, 3, chunks=30)
        earlier = {s.id: len(s.chunks) - 1 for s in streams}
        time.sleep(3)
        delivered = {s.id: len(s.chunks) - 1 for s in streams}
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=20)
    finally:
        server.stop()
    restarted = start_server(server.data_dir, create_keys=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = {r.id: r for r in usage_rows(sqlite_url(server)) if r.id in delivered}
            if len(rows) == len(delivered):
                break
            time.sleep(1)
        assert set(rows) == set(delivered)
        for stream_id, seen in delivered.items():
            assert rows[stream_id].status == 499 and earlier[stream_id] <= rows[stream_id].completion_tokens <= seen + 60
    finally:
        restarted.stop()


def test_a_client_leaving_a_plain_request_cancels_it(server):
    key = create_key(server)
    body = {**LONG, "stream": False, "max_tokens": 2000, "min_tokens": 2000}
    with pytest.raises(httpx.ReadTimeout):
        with server.client(key["secret"]) as client:
            client.post("/v1/chat/completions", json=body, timeout=3)
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline and not rows:
        rows = usage_rows(sqlite_url(server), key_id=key["id"])
        time.sleep(0.2)
    (row,) = rows
    assert row.status == 499 and 0 < row.completion_tokens < 2000, row
