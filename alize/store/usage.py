"""Usage records: one row per metered request, written once, summed for limits and reports."""

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Insert, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from alize.store.db import Database
from alize.store.tables import InflightRequest, UsageRecord

GROUPS = ("day", "model", "key", "workspace")


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


def insert_once(db: Database, table: type, values: dict[str, Any], keys: list[str]) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING the keys: a row written at most once."""
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    return (insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
            .returning(*(getattr(table, k) for k in keys)))


def record_in(db: Database, connection: Connection, usage: Usage) -> bool:
    """Writes the record within the caller's transaction, unless one with its id exists.
    Returns whether this call wrote it."""
    values = asdict(usage) | {"day": usage.created_at.astimezone(UTC).date().isoformat()}
    return connection.execute(insert_once(db, UsageRecord, values, ["id"])).first() is not None


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


@dataclass(frozen=True)
class ReportRow:
    group: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nano: int


def report(db: Database, start: date, end: date, group_by: str, workspace_id: str | None = None,
           key_id: str | None = None) -> list[ReportRow]:
    """Totals per day, model, key or workspace for days start..end (inclusive, UTC)."""
    column = {"day": UsageRecord.day, "model": UsageRecord.model, "key": UsageRecord.key_id,
              "workspace": UsageRecord.workspace_id}[group_by]
    query = (select(column, func.count(), func.sum(case((UsageRecord.status >= 400, 1), else_=0)),
                    func.sum(UsageRecord.prompt_tokens), func.sum(UsageRecord.completion_tokens),
                    func.sum(UsageRecord.cached_tokens), func.sum(UsageRecord.cost_nano))
             .where(UsageRecord.day >= start.isoformat(), UsageRecord.day <= end.isoformat())
             .group_by(column).order_by(column))
    if workspace_id is not None:
        query = query.where(UsageRecord.workspace_id == workspace_id)
    if key_id is not None:
        query = query.where(UsageRecord.key_id == key_id)
    with db.session() as session:
        return [ReportRow(str(g) if g is not None else "", *(int(v or 0) for v in rest))
                for g, *rest in session.execute(query)]


def records_with_id(db: Database, request_id: str) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(UsageRecord)
                              .where(UsageRecord.id == request_id)) or 0
