"""The landing page (usage and money), the cost comparison, and the CSV of what they show."""

import asyncio
from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from alize.console import charts
from alize.console.render import page
from alize.console.security import Console, ConsoleDep
from alize.errors import AlizeError
from alize.services.dashboard import UsagePage

router = APIRouter(prefix="/console", include_in_schema=False)


def _query(usage: UsagePage) -> str:
    values = {"start": usage.start.isoformat(), "end": usage.end.isoformat()}
    if usage.workspace:
        values["workspace"] = usage.workspace
    return urlencode(values)


async def _usage_page(request: Request, console: Console, template: str, start: str | None, end: str | None,
                      workspace: str | None) -> Response:
    dashboard, view = console.platform.dashboard, console.view
    try:
        usage = await asyncio.to_thread(dashboard.usage, view, start or None, end or None, workspace or None)
        error = None
    except AlizeError as exc:  # a bad date, a workspace not in view: the default period, and why
        usage = await asyncio.to_thread(dashboard.usage, view, None, None, None)
        error = exc.message
    here = console.platform.hub.registry.models()
    return page(request, template, console, 400 if error else 200, error=error, page=usage, query=_query(usage),
                chart=charts.daily(usage.series()), cmp=usage.comparison, here=here,
                workspaces=view.workspaces())


@router.get("/")
async def usage_page(request: Request, console: ConsoleDep, start: str | None = None, end: str | None = None,
                     workspace: str | None = None) -> Response:
    return await _usage_page(request, console, "usage.html", start, end, workspace)


@router.get("/costs")
async def costs_page(request: Request, console: ConsoleDep, start: str | None = None, end: str | None = None,
                     workspace: str | None = None) -> Response:
    return await _usage_page(request, console, "costs.html", start, end, workspace)


@router.get("/usage.csv")
async def usage_csv(console: ConsoleDep, start: str | None = None, end: str | None = None,
                    workspace: str | None = None,
                    group_by: Literal["day", "model", "key", "workspace", "endpoint"] = "day") -> Response:
    report = await asyncio.to_thread(console.view.usage, start or None, end or None, group_by, workspace or None)
    return PlainTextResponse(report.csv(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{report.filename}"'})
