"""Usage reports: totals by day, model, key or workspace over a date range, as rows or CSV."""

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from alize.errors import InvalidRequest
from alize.store import accounts
from alize.store import usage as usage_store
from alize.store.db import Database

COLUMNS = ("group", "name", "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_eur")
NUMBERS = COLUMNS[2:]


@dataclass(frozen=True)
class Report:
    start: date
    end: date
    group_by: str
    rows: list[dict[str, object]]

    def totals(self) -> dict[str, object]:
        out: dict[str, object] = {"group": "total", "name": "total"}
        for column in NUMBERS:
            out[column] = sum(row[column] for row in self.rows)  # type: ignore[misc]
        out["cost_eur"] = round(float(out["cost_eur"]), 9)  # type: ignore[arg-type]
        return out

    @property
    def filename(self) -> str:
        return f"alize-usage-{self.start}-{self.end}-by-{self.group_by}.csv"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[self.group_by, *COLUMNS[1:]], lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({self.group_by: row["group"], **{c: row[c] for c in COLUMNS[1:]}})
        return buffer.getvalue()


def parse_day(value: str | date | None, default: date, param: str) -> date:
    if value is None:
        return default
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{param} must be a date such as 2026-11-01", param=param) from None


REQUEST_COLUMNS = ("id", "request_id", "created_at", "key", "workspace", "model", "endpoint", "status",
                   "prompt_tokens", "completion_tokens", "cached_tokens", "cost_eur", "latency_ms", "backend")
MAX_REQUEST_ROWS = 100_000


@dataclass(frozen=True)
class RequestReport:
    """One row per request (group_by=request), newest first."""

    start: date
    end: date
    rows: list[dict[str, object]]
    has_more: bool

    @property
    def filename(self) -> str:
        return f"alize-requests-{self.start}-{self.end}.csv"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(REQUEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()


class ReportService:
    def __init__(self, db: Database):
        self.db = db

    def usage(self, start: str | date | None = None, end: str | date | None = None, group_by: str = "day",
              workspace_id: str | None = None, key_id: str | None = None) -> Report:
        today = datetime.now(UTC).date()
        first = parse_day(start, today - timedelta(days=30), "start")
        last = parse_day(end, today, "end")
        if first > last:
            raise InvalidRequest("start must not be after end", param="start")
        if group_by not in usage_store.GROUPS:
            raise InvalidRequest(f"group_by must be one of {', '.join(usage_store.GROUPS)}", param="group_by")
        rows = usage_store.report(self.db, first, last, group_by, workspace_id, key_id)
        names = self._names(group_by)
        return Report(first, last, group_by, [
            {"group": r.group, "name": names.get(r.group, r.group), "requests": r.requests, "errors": r.errors,
             "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
             "cached_tokens": r.cached_tokens, "cost_eur": round(r.cost_nano / 1e9, 9)} for r in rows])

    def requests(self, start: str | date | None = None, end: str | date | None = None,
                 workspace_id: str | None = None, key_id: str | None = None, limit: int = 1000) -> RequestReport:
        """Each request of the period with its id, x-request-id, key name, model, tokens, cost,
        latency and status."""
        today = datetime.now(UTC).date()
        first = parse_day(start, today - timedelta(days=30), "start")
        last = parse_day(end, today, "end")
        if first > last:
            raise InvalidRequest("start must not be after end", param="start")
        if not 1 <= limit <= MAX_REQUEST_ROWS:
            raise InvalidRequest(f"limit must be between 1 and {MAX_REQUEST_ROWS}", param="limit")
        records, more = usage_store.requests(self.db, first, last, workspace_id, key_id, limit)
        keys, workspaces = self._names("key"), self._names("workspace")
        rows = [{"id": r.id, "request_id": r.request_id, "created_at": r.created_at.isoformat(),
                 "key": keys.get(r.key_id, r.key_id), "workspace": workspaces.get(r.workspace_id, r.workspace_id),
                 "model": r.model, "endpoint": r.endpoint, "status": r.status, "prompt_tokens": r.prompt_tokens,
                 "completion_tokens": r.completion_tokens, "cached_tokens": r.cached_tokens,
                 "cost_eur": round(r.cost_nano / 1e9, 9), "latency_ms": r.latency_ms, "backend": r.backend}
                for r in records]
        return RequestReport(first, last, rows, more)

    def _names(self, group_by: str) -> dict[str, str]:
        """Key and workspace ids by the names people gave them (a report reads by name)."""
        if group_by == "key":
            return {k.id: k.name for k in accounts.list_keys(self.db)}
        if group_by == "workspace":
            return {w.id: w.name for w in accounts.list_workspaces(self.db)}
        return {}
