"""The figures the console's usage and workspaces pages show, for one admin's view: daily
series, breakdowns, the month so far against each budget, and current consumption.
Everything reads the daily roll-ups (store/usage.py), so a year of traffic stays fast."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from alize.registry import PriceComparison
from alize.services.admin import AdminView
from alize.services.comparison import Comparison, compare
from alize.services.reports import Report
from alize.store import usage as usage_store
from alize.store.accounts import Limits, WorkspaceInfo
from alize.store.db import Database


@dataclass(frozen=True)
class Budget:
    """One scope's month so far against its monthly limits (None: no such limit)."""

    kind: str  # "workspace" | "key"
    name: str
    workspace: str
    tokens: int
    token_limit: int | None
    nano: int
    nano_limit: int | None

    @property
    def tokens_share(self) -> float | None:
        return None if not self.token_limit else min(1.0, self.tokens / self.token_limit)

    @property
    def money_share(self) -> float | None:
        return None if not self.nano_limit else min(1.0, self.nano / self.nano_limit)


@dataclass(frozen=True)
class UsagePage:
    start: date
    end: date
    workspace: str | None
    by_day: Report
    by_model: Report
    by_key: Report
    by_endpoint: Report
    budgets: list[Budget]
    comparison: Comparison

    def series(self) -> list[dict[str, object]]:
        """One point per day of the period, zero where nothing was recorded."""
        recorded = {row["group"]: row for row in self.by_day.rows}
        out = []
        day = self.start
        while day <= self.end:
            row = recorded.get(day.isoformat(), {})
            out.append({"day": day, "tokens": int(row.get("prompt_tokens", 0)) + int(row.get("completion_tokens", 0)),
                        "cost_eur": float(row.get("cost_eur", 0.0)), "requests": int(row.get("requests", 0))})
            day += timedelta(days=1)
        return out


@dataclass(frozen=True)
class Consumption:
    """A workspace's use now against its limits: the last minute, and the month so far."""

    workspace_id: str
    name: str
    limits: Limits
    requests_last_minute: int
    tokens_last_minute: int
    month_tokens: int
    month_nano: int


def month_start(today: date) -> date:
    return today.replace(day=1)


class Dashboard:
    def __init__(self, db: Database, prices: PriceComparison):
        self.db = db
        self.prices = prices

    def usage(self, view: AdminView, start: str | date | None, end: str | date | None,
              workspace: str | None = None) -> UsagePage:
        reports = {group: view.usage(start, end, group, workspace) for group in ("day", "model", "key", "endpoint")}
        first, last = reports["day"].start, reports["day"].end
        return UsagePage(first, last, workspace, reports["day"], reports["model"], reports["key"],
                         reports["endpoint"], self.budgets(view, workspace),
                         compare(self.prices, reports["model"].rows))

    def budgets(self, view: AdminView, workspace: str | None = None) -> list[Budget]:
        """This month's use against every monthly token limit and euro budget in view."""
        today = datetime.now(UTC).date()
        spent = {scope: usage_store.totals_by(self.db, scope, month_start(today), today)
                 for scope in ("workspace", "key")}
        out = []
        workspaces = [w for w in view.workspaces() if workspace in (None, w.name, w.id)]
        for ws in workspaces:
            if ws.limits.monthly_tokens is not None or ws.limits.monthly_budget_nano is not None:
                tokens, nano = spent["workspace"].get(ws.id, (0, 0))
                out.append(Budget("workspace", ws.name, ws.name, tokens, ws.limits.monthly_tokens, nano,
                                  ws.limits.monthly_budget_nano))
        shown = {ws.id for ws in workspaces}
        for key in view.keys():
            if key.revoked_at is not None or key.workspace.id not in shown:
                continue
            if key.limits.monthly_tokens is not None or key.limits.monthly_budget_nano is not None:
                tokens, nano = spent["key"].get(key.id, (0, 0))
                out.append(Budget("key", key.name, key.workspace.name, tokens, key.limits.monthly_tokens, nano,
                                  key.limits.monthly_budget_nano))
        return out

    def budgets_left(self, workspaces: list[WorkspaceInfo]) -> dict[str, float]:
        """Euros left this month, by workspace name, for the workspaces with a budget."""
        today = datetime.now(UTC).date()
        spent = usage_store.totals_by(self.db, "workspace", month_start(today), today)
        return {ws.name: (ws.limits.monthly_budget_nano - spent.get(ws.id, (0, 0))[1]) / 1e9
                for ws in workspaces if ws.limits.monthly_budget_nano is not None}

    def consumption(self, view: AdminView) -> list[Consumption]:
        now = datetime.now(UTC)
        month = usage_store.totals_by(self.db, "workspace", month_start(now.date()), now.date())
        out = []
        for ws in view.workspaces():
            requests, tokens = usage_store.last_minute(self.db, "workspace", ws.id, now)
            month_tokens, month_nano = month.get(ws.id, (0, 0))
            out.append(Consumption(ws.id, ws.name, ws.limits, requests, tokens, month_tokens, month_nano))
        return out

    def last_used(self) -> dict[str, datetime]:
        return usage_store.last_used(self.db)
