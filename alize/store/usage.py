"""Usage records: one row per metered request, written once, summed for limits and reports."""

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Insert, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alize.store import rollups
from alize.store.accounts import aware
from alize.store.db import Database
from alize.store.rollups import GROUPS, ReportRow, report, totals_by
from alize.store.tables import ApiKey, InflightRequest, UsageRecord

__all__ = ["GROUPS", "ReportRow", "Usage", "last_minute", "last_used", "record", "report", "totals_by"]


@dataclass(frozen=True)
class Usage:
    id: str
    created_at: datetime
    workspace_id: str
    key_id: str
    model: str | None
    endpoint: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_nano: int = 0
    latency_ms: int = 0
    request_id: str | None = None  # x-request-id
    backend: str | None = None  # the local engine or upstream replica that answered


def insert_once(db: Database, table: type, values: dict[str, Any], keys: list[str]) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING the keys: a row written at most once."""
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    return (insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
            .returning(*(getattr(table, k) for k in keys)))


def record_in(db: Database, connection: Connection, usage: Usage) -> bool:
    """Writes the record within the caller's transaction, unless one with its id exists,
    and adds it to its day's and month's roll-ups. Returns whether this call wrote it."""
    day = usage.created_at.astimezone(UTC).date()
    values = asdict(usage) | {"day": day.isoformat()}
    if connection.execute(insert_once(db, UsageRecord, values, ["id"])).first() is None:
        return False
    rollups.add(db, connection, day, usage.workspace_id, usage.key_id, usage.model, usage.endpoint, {
        "requests": 1, "errors": int(usage.status >= 400), "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens, "cached_tokens": usage.cached_tokens,
        "cost_nano": usage.cost_nano})
    return True


def record(db: Database, usage: Usage) -> bool:
    """Writes the record and commits it, with the end of the request's progress row (store/
    inflight.py) if it had one; a second record with the same id is ignored.
    Returns whether this call wrote it."""
    with db.engine.begin() as connection:
        connection.execute(delete(InflightRequest).where(InflightRequest.id == usage.id))
        return record_in(db, connection, usage)


def month_totals(db: Database, scope: str, scope_id: str, since: datetime) -> tuple[int, int]:
    """(tokens, cost in nano-euros) recorded for a key or workspace since `since`."""
    column = UsageRecord.key_id if scope == "key" else UsageRecord.workspace_id
    query = (select(func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0),
                    func.coalesce(func.sum(UsageRecord.cost_nano), 0))
             .where(column == scope_id, UsageRecord.created_at >= since))
    with db.session() as session:
        tokens, cost = session.execute(query).one()
    return int(tokens), int(cost)


def last_used(db: Database) -> dict[str, datetime]:
    """When each key was last recorded using the API (one index lookup per key)."""
    latest = (select(func.max(UsageRecord.created_at)).where(UsageRecord.key_id == ApiKey.id)
              .correlate(ApiKey).scalar_subquery())
    with db.session() as session:
        return {key_id: aware(moment) for key_id, moment in session.execute(select(ApiKey.id, latest))
                if moment is not None}


def last_minute(db: Database, scope: str, scope_id: str, now: datetime) -> tuple[int, int]:
    """(requests, tokens) recorded for a key or workspace in the minute before `now`: the
    requests the limits admitted (not those refused with a 4xx, which a client that left, 499,
    is not)."""
    column = UsageRecord.key_id if scope == "key" else UsageRecord.workspace_id
    admitted = or_(UsageRecord.status < 400, UsageRecord.status >= 499)
    query = (select(func.count(), func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0))
             .where(column == scope_id, UsageRecord.created_at >= now - timedelta(minutes=1), admitted))
    with db.session() as session:
        requests, tokens = session.execute(query).one()
    return int(requests), int(tokens)


def requests(db: Database, start: date, end: date, workspace_id: str | None = None, key_id: str | None = None,
             limit: int = 1000) -> tuple[list[Usage], bool]:
    """The period's usage records, newest first, at most `limit`; and whether there are more."""
    query = select(UsageRecord).where(UsageRecord.day >= start.isoformat(), UsageRecord.day <= end.isoformat())
    if workspace_id is not None:
        query = query.where(UsageRecord.workspace_id == workspace_id)
    if key_id is not None:
        query = query.where(UsageRecord.key_id == key_id)
    query = query.order_by(UsageRecord.created_at.desc(), UsageRecord.id).limit(limit + 1)
    with db.session() as session:
        rows = list(session.scalars(query))
    out = [Usage(r.id, aware(r.created_at), r.workspace_id,
                 r.key_id, r.model, r.endpoint, r.status, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
                 r.cost_nano, r.latency_ms, r.request_id, r.backend) for r in rows[:limit]]
    return out, len(rows) > limit


def records_with_id(db: Database, request_id: str) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(UsageRecord)
                              .where(UsageRecord.id == request_id)) or 0
