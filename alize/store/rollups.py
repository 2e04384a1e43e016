"""Usage summed per period, added to in the same transaction as each usage record, and the
reports read from them, never from the records:

- usage_key_daily (day, workspace, key): reports by day, key or workspace, any period;
- usage_monthly and usage_daily (month or day, workspace, key, model, endpoint): reports by
  model or endpoint, a period's whole months from the monthly rows, its other days from the
  daily ones.

A year of traffic is then a few thousand rows to add up, whatever the number of requests."""

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, case, delete, func, select, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

from alize.store.db import Database
from alize.store.tables import UsageDaily, UsageKeyDaily, UsageMonthly, UsageRecord

GROUPS = ("day", "model", "key", "workspace", "endpoint")
SUMMED = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano")
DIMENSIONS = ["workspace_id", "key_id", "model", "endpoint"]
BY_KEY = ("day", "key", "workspace")  # the groups usage_key_daily answers


@dataclass(frozen=True)
class ReportRow:
    group: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nano: int


@cache
def _upserts(dialect: str) -> list[tuple[Any, tuple[str, ...]]]:
    """Per roll-up, its INSERT ... ON CONFLICT DO UPDATE with bound parameters, built once
    (atomic on both databases: writers of one row wait for each other), and its key columns."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    out = []
    for table, keys in ((UsageKeyDaily, ("day", "workspace_id", "key_id")), (UsageDaily, ("day", *DIMENSIONS)),
                        (UsageMonthly, ("month", *DIMENSIONS))):
        statement = insert(table).values({name: bindparam(name) for name in (*keys, *SUMMED)})
        added = {name: getattr(table, name) + getattr(statement.excluded, name) for name in SUMMED}
        out.append((statement.on_conflict_do_update(index_elements=list(keys), set_=added), keys))
    return out


def add(db: Database, connection: Connection, day: date, workspace_id: str, key_id: str, model: str | None,
        endpoint: str, sums: dict[str, int]) -> None:
    """Adds one record's figures to its row of each roll-up, in the caller's transaction."""
    values = {"day": day.isoformat(), "month": day.isoformat()[:7], "workspace_id": workspace_id,
              "key_id": key_id, "model": model or "", "endpoint": endpoint, **sums}
    for statement, keys in _upserts(db.engine.dialect.name):
        connection.execute(statement, {name: values[name] for name in (*keys, *SUMMED)})


def _split(start: date, end: date) -> tuple[list[tuple[date, date]], tuple[str, str] | None]:
    """The period as daily ranges (partial months) and a range of whole months."""
    first_whole = start if start.day == 1 else (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    after_last = end + timedelta(days=1)
    last_whole = after_last if after_last.day == 1 else after_last.replace(day=1)  # exclusive
    if first_whole >= last_whole:
        return [(start, end)], None
    days = [(start, first_whole - timedelta(days=1))] if start < first_whole else []
    if last_whole <= end:
        days.append((last_whole, end))
    last_month = last_whole - timedelta(days=1)
    return days, (first_whole.isoformat()[:7], last_month.isoformat()[:7])


def _where(table: Any, workspace_id: str | None, key_id: str | None) -> list[ColumnElement[bool]]:
    out = []
    if workspace_id is not None:
        out.append(table.workspace_id == workspace_id)
    if key_id is not None:
        out.append(table.key_id == key_id)
    return out


def _column(table: Any, group_by: str) -> Any:
    return getattr(table, {"key": "key_id", "workspace": "workspace_id"}.get(group_by, group_by))


def _part(table: Any, group_by: str, where: list[ColumnElement[bool]]) -> Select[Any]:
    column = _column(table, group_by)
    return (select(column.label("g"), *(func.sum(getattr(table, n)).label(n) for n in SUMMED))
            .where(*where).group_by(column))


def report(db: Database, start: date, end: date, group_by: str, workspace_id: str | None = None,
           key_id: str | None = None) -> list[ReportRow]:
    """Totals per day, model, key, workspace or endpoint for days start..end (inclusive, UTC)."""
    if group_by in BY_KEY:
        parts = [_part(UsageKeyDaily, group_by, [UsageKeyDaily.day >= start.isoformat(),
                                                 UsageKeyDaily.day <= end.isoformat(),
                                                 *_where(UsageKeyDaily, workspace_id, key_id)])]
    else:
        days, months = _split(start, end)
        parts = [_part(UsageDaily, group_by, [UsageDaily.day >= a.isoformat(), UsageDaily.day <= b.isoformat(),
                                              *_where(UsageDaily, workspace_id, key_id)]) for a, b in days]
        if months is not None:
            parts.append(_part(UsageMonthly, group_by, [UsageMonthly.month >= months[0],
                                                        UsageMonthly.month <= months[1],
                                                        *_where(UsageMonthly, workspace_id, key_id)]))
    union = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
    query = (select(union.c.g, *(func.sum(union.c[n]) for n in SUMMED)).group_by(union.c.g).order_by(union.c.g))
    with db.session() as session:
        return [ReportRow(str(g) if g is not None else "", *(int(v or 0) for v in rest))
                for g, *rest in session.execute(query)]


def totals_by(db: Database, scope: str, start: date, end: date) -> dict[str, tuple[int, int]]:
    """(tokens, cost in nano-euros) per key or workspace id over days start..end."""
    return {row.group: (row.prompt_tokens + row.completion_tokens, row.cost_nano)
            for row in report(db, start, end, scope)}



def rebuild(db: Database) -> None:
    """Recomputes every roll-up from the usage records (after a bulk load of records)."""
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    owner = [UsageRecord.workspace_id, UsageRecord.key_id]
    every = [*owner, func.coalesce(UsageRecord.model, ""), UsageRecord.endpoint]
    plans = ((UsageKeyDaily, ["day", "workspace_id", "key_id"], [UsageRecord.day, *owner]),
             (UsageDaily, ["day", *DIMENSIONS], [UsageRecord.day, *every]),
             (UsageMonthly, ["month", *DIMENSIONS], [func.substr(UsageRecord.day, 1, 7), *every]))
    with db.engine.begin() as connection:
        for table, names, dims in plans:
            rows = select(*dims, func.count(), func.sum(case((UsageRecord.status >= 400, 1), else_=0)),
                          *(func.sum(getattr(UsageRecord, n)) for n in SUMMED[2:])).group_by(*dims)
            connection.execute(delete(table))
            connection.execute(insert(table).from_select([*names, *SUMMED], rows))
