"""The real databases the storage tests run against: SQLite in a temporary folder, a
fresh PostgreSQL database on the local server (dropped afterwards), and the local Redis.

`make test` starts PostgreSQL and Redis when they are installed (scripts/services.sh).
Where one is not running, the tests that need it are skipped, with one line in the summary
saying which and how to enable them; CI sets ALIZE_REQUIRE_SERVICES=1, which turns any
such skip into a failure."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
import pytest
import redis

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
REDIS_URL = "redis://127.0.0.1:6379/0"


HOW_TO = ("install it and run `make test` (scripts/services.sh starts it), or start it yourself; "
          "set ALIZE_REQUIRE_SERVICES=1 to fail instead of skipping")


@cache
def _missing(service: str) -> str | None:
    """Why the service cannot be reached, or None."""
    try:
        if service == "postgresql":
            psycopg.connect(PG_ADMIN, connect_timeout=3).close()
        else:
            with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as r:
                r.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def need(service: str) -> None:
    """Skips the calling test when the local PostgreSQL or Redis is not running (fails
    instead under ALIZE_REQUIRE_SERVICES=1)."""
    problem = _missing(service)
    if problem is None:
        return
    where = {"postgresql": "PostgreSQL at 127.0.0.1:5432", "redis": "Redis at 127.0.0.1:6379"}[service]
    message = f"{where} is not running, so the tests that need it did not run: {HOW_TO}"
    if os.environ.get("ALIZE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} ({problem})", pytrace=False)
    pytest.skip(message)


def redis_url() -> str:
    need("redis")
    return REDIS_URL


@contextmanager
def postgres_database() -> Iterator[str]:
    need("postgresql")
    name = f"alize_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'alize.db'}"
    else:
        with postgres_database() as url:
            yield url
