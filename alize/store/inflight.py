"""Streaming requests in flight, under their server's lease: what each has delivered so far.

A server writes its streams' progress every few seconds (hold) and renews their lease;
recording a request deletes its row in the same transaction as its usage record
(usage.record). A row
whose lease has lapsed belongs to a dead server: any server turns it into the request's
usage record (reclaim), once, so what a stream delivered is billed once, not lost."""

from dataclasses import asdict
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alize.store.db import Database
from alize.store.tables import InflightRequest
from alize.store.usage import Usage, record_in

PROGRESS = ("completion_tokens", "cached_tokens", "cost_nano", "latency_ms", "lease_until")


@cache
def _upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (id) DO UPDATE of the progress columns, built once per dialect:
    building `excluded` costs milliseconds of the GIL, every second of every stream."""
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(InflightRequest)
    return statement.on_conflict_do_update(index_elements=["id"], set_={k: statement.excluded[k] for k in PROGRESS})


def hold(db: Database, holder: str, lease_until: datetime, progress: list[Usage]) -> None:
    """Writes (or updates) the progress of this server's streams, and renews the lease of
    all its rows."""
    rows = [{k: v for k, v in asdict(usage).items() if k != "status"} | {"holder": holder, "lease_until": lease_until}
            for usage in progress]
    with db.engine.begin() as connection:
        if rows:
            connection.execute(_upsert(db.engine.dialect.name), rows)
        connection.execute(update(InflightRequest).where(InflightRequest.holder == holder)
                           .values(lease_until=lease_until))


def reclaim(db: Database, now: datetime, status: int) -> list[Usage]:
    """Turns the rows whose lease lapsed before `now` into usage records (with `status`);
    returns the records this call wrote (another server reclaiming at once writes the rest)."""
    with db.session() as session:
        rows = list(session.scalars(select(InflightRequest).where(InflightRequest.lease_until < now)))
    written = []
    for row in rows:
        usage = Usage(id=row.id, created_at=row.created_at, workspace_id=row.workspace_id, key_id=row.key_id,
                      model=row.model, endpoint=row.endpoint, status=status, prompt_tokens=row.prompt_tokens,
                      completion_tokens=row.completion_tokens, cached_tokens=row.cached_tokens,
                      cost_nano=row.cost_nano, latency_ms=row.latency_ms, request_id=row.request_id,
                      backend=row.backend)
        with db.engine.begin() as connection:
            taken = connection.execute(delete(InflightRequest).where(
                InflightRequest.id == row.id, InflightRequest.lease_until < now)).rowcount
            if taken == 1 and record_in(db, connection, usage):
                written.append(usage)
    return written


def count(db: Database) -> int:
    with db.session() as session:
        return len(session.scalars(select(InflightRequest.id)).all())
