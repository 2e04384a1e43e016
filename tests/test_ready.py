"""/ready: 200 only while the database and Redis answer; /health stays a liveness probe.
A real server on PostgreSQL and a Redis of its own (stopped and restarted by the test), and
its database dropped under it."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from tests.databases import need, postgres_database
from tests.server import free_port, start_server


def _redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port).ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("redis-server did not start")


def _ready(url: str) -> httpx.Response:
    return httpx.get(url + "/ready", timeout=20)


def test_ready_follows_the_database_and_redis(tmp_path: Path):
    need("postgresql")
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if os.environ.get("ALIZE_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    port = free_port()
    redis_process = _redis(port, tmp_path)
    with postgres_database() as url:
        server = start_server(tmp_path / "data", env={"ALIZE_DATABASE_URL": url,
                                                      "ALIZE_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
        try:
            ready = _ready(server.url)
            assert ready.status_code == 200 and "mistral-small-latest" in ready.json()["models"]
            redis_process.kill()
            redis_process.wait()
            down = _ready(server.url)
            assert down.status_code == 503 and down.json()["type"] == "not_ready"
            assert "redis" in down.json()["message"] and "database" not in down.json()["message"]
            assert httpx.get(server.url + "/health").status_code == 200  # alive all the same
            redis_process = _redis(port, tmp_path)
            deadline = time.monotonic() + 15
            while _ready(server.url).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _ready(server.url).status_code == 200
            name = url.rsplit("/", 1)[1]
            with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            gone = _ready(server.url)
            assert gone.status_code == 503 and "database" in gone.json()["message"], gone.text
        finally:
            server.stop()
            redis_process.kill()
