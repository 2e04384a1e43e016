"""Usage records: one row per metered request, written once, summed for limits and reports."""

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Insert, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

from alize.store.db import Database
from alize.store.tables import InflightRequest, UsageDaily, UsageRecord

GROUPS = ("day", "model", "key", "workspace", "endpoint")
SUMMED = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano")


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
    """Writes the record within the caller's transaction, unless one with its id exists,
    and adds it to its day's roll-up. Returns whether this call wrote it."""
    day = usage.created_at.astimezone(UTC).date().isoformat()
    values = asdict(usage) | {"day": day}
    if connection.execute(insert_once(db, UsageRecord, values, ["id"])).first() is None:
        return False
    connection.execute(_add_to_rollup(db, usage, day))
    return True


def _add_to_rollup(db: Database, usage: Usage, day: str) -> Insert:
    """INSERT ... ON CONFLICT DO UPDATE adding the record to usage_daily (atomic on both
    databases: concurrent writers of one row wait for each other's transaction)."""
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    values = {"requests": 1, "errors": int(usage.status >= 400), "prompt_tokens": usage.prompt_tokens,
              "completion_tokens": usage.completion_tokens, "cached_tokens": usage.cached_tokens,
              "cost_nano": usage.cost_nano}
    statement = insert(UsageDaily).values(day=day, workspace_id=usage.workspace_id, key_id=usage.key_id,
                                          model=usage.model or "", endpoint=usage.endpoint,
                                          last_at=usage.created_at, **values)
    added = {name: getattr(UsageDaily, name) + getattr(statement.excluded, name) for name in SUMMED}
    later = case((statement.excluded.last_at > UsageDaily.last_at, statement.excluded.last_at),
                 else_=UsageDaily.last_at)
    return statement.on_conflict_do_update(
        index_elements=["day", "workspace_id", "key_id", "model", "endpoint"], set_={**added, "last_at": later})


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
    """Totals per day, model, key, workspace or endpoint for days start..end (inclusive,
    UTC), from the daily roll-ups."""
    column = getattr(UsageDaily, {"key": "key_id", "workspace": "workspace_id"}.get(group_by, group_by))
    query = (select(column, *(func.sum(getattr(UsageDaily, name)) for name in SUMMED))
             .where(*_filters(start, end, workspace_id, key_id)).group_by(column).order_by(column))
    with db.session() as session:
        return [ReportRow(str(g) if g is not None else "", *(int(v or 0) for v in rest))
                for g, *rest in session.execute(query)]


def _filters(start: date, end: date, workspace_id: str | None, key_id: str | None) -> list[ColumnElement[bool]]:
    out = [UsageDaily.day >= start.isoformat(), UsageDaily.day <= end.isoformat()]
    if workspace_id is not None:
        out.append(UsageDaily.workspace_id == workspace_id)
    if key_id is not None:
        out.append(UsageDaily.key_id == key_id)
    return out


def totals_by(db: Database, scope: str, start: date, end: date) -> dict[str, tuple[int, int]]:
    """(tokens, cost in nano-euros) per key or workspace id over days start..end."""
    column = UsageDaily.key_id if scope == "key" else UsageDaily.workspace_id
    query = (select(column, func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens),
                    func.sum(UsageDaily.cost_nano))
             .where(*_filters(start, end, None, None)).group_by(column))
    with db.session() as session:
        return {scope_id: (int(tokens or 0), int(cost or 0)) for scope_id, tokens, cost in session.execute(query)}


def last_used(db: Database) -> dict[str, datetime]:
    """When each key was last recorded using the API."""
    query = select(UsageDaily.key_id, func.max(UsageDaily.last_at)).group_by(UsageDaily.key_id)
    with db.session() as session:
        return {key_id: moment if moment.tzinfo else moment.replace(tzinfo=UTC)
                for key_id, moment in session.execute(query) if moment is not None}


def last_minute(db: Database, scope: str, scope_id: str, now: datetime) -> tuple[int, int]:
    """(requests, tokens) recorded for a key or workspace in the minute before `now`."""
    column = UsageRecord.key_id if scope == "key" else UsageRecord.workspace_id
    query = (select(func.count(), func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0))
             .where(column == scope_id, UsageRecord.created_at >= now - timedelta(minutes=1)))
    with db.session() as session:
        requests, tokens = session.execute(query).one()
    return int(requests), int(tokens)


def records_with_id(db: Database, request_id: str) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(UsageRecord)
                              .where(UsageRecord.id == request_id)) or 0
