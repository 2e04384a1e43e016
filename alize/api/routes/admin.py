"""/admin/v1: workspaces, keys and usage, for holders of an admin key."""

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from alize.api.deps import AdminViewDep, PlatformDep
from alize.api.strict_json import StrictJSONRoute
from alize.errors import Forbidden
from alize.protocol.admin import (
    KeyCreate,
    KeyOut,
    KeyRotate,
    KeyWithSecret,
    LimitsBody,
    LimitsOut,
    RequestReportOut,
    RequestRow,
    UsageReport,
    UsageRow,
    WorkspaceCreate,
    WorkspaceOut,
)
from alize.services.accounts import LimitsSpec
from alize.store.accounts import KeyInfo, Limits, WorkspaceInfo

router = APIRouter(prefix="/admin/v1", route_class=StrictJSONRoute)


def limits_out(limits: Limits) -> LimitsOut:
    budget = limits.monthly_budget_nano
    return LimitsOut(rpm=limits.rpm, tpm=limits.tpm, monthly_tokens=limits.monthly_tokens,
                     budget_eur=None if budget is None else budget / 1e9)


def workspace_out(ws: WorkspaceInfo) -> WorkspaceOut:
    return WorkspaceOut(id=ws.id, name=ws.name, created_at=ws.created_at, limits=limits_out(ws.limits))


def key_out(key: KeyInfo) -> KeyOut:
    return KeyOut(id=key.id, name=key.name, prefix=key.prefix, workspace=key.workspace.name,
                  workspace_id=key.workspace.id, created_at=key.created_at, expires_at=key.expires_at,
                  revoked_at=key.revoked_at, models=list(key.models) or None, admin=key.is_admin,
                  admin_scope=("workspace" if key.admin_scoped else "org") if key.is_admin else None,
                  limits=limits_out(key.limits), previous_secret_valid_until=key.previous_valid_until)


def _spec(body: LimitsBody) -> LimitsSpec:
    return LimitsSpec(body.rpm, body.tpm, body.monthly_tokens, body.budget_eur)


@router.get("/workspaces")
def list_workspaces(view: AdminViewDep) -> dict[str, object]:
    return {"object": "list", "data": [workspace_out(w) for w in view.workspaces()]}


@router.post("/workspaces", status_code=201)
def create_workspace(body: WorkspaceCreate, view: AdminViewDep) -> WorkspaceOut:
    return workspace_out(view.create_workspace(body.name, _spec(body)))


@router.patch("/workspaces/{ref}/limits")
def set_workspace_limits(ref: str, body: LimitsBody, view: AdminViewDep) -> WorkspaceOut:
    """Changes the limits given in the body (null removes a limit); others stay."""
    return workspace_out(view.set_workspace_limits(ref, body.model_dump(exclude_unset=True)))


@router.get("/keys")
def list_keys(view: AdminViewDep, workspace: str | None = None) -> dict[str, object]:
    return {"object": "list", "data": [key_out(k) for k in view.keys(workspace)]}


@router.post("/keys", status_code=201)
def create_key(body: KeyCreate, view: AdminViewDep) -> KeyWithSecret:
    key, secret = view.create_key(body.name, body.workspace, body.models, body.expires_in_days, _spec(body),
                                  body.admin, body.admin_scope == "workspace")
    return KeyWithSecret(**key_out(key).model_dump(), secret=secret)


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: str, view: AdminViewDep) -> KeyOut:
    return key_out(view.revoke_key(key_id))


@router.post("/keys/{key_id}/rotate")
def rotate_key(key_id: str, view: AdminViewDep, body: KeyRotate | None = None) -> KeyWithSecret:
    key, secret = view.rotate_key(key_id, (body or KeyRotate()).grace_seconds)
    return KeyWithSecret(**key_out(key).model_dump(), secret=secret)


def _csv(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(text, media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/usage", response_model=None)
def usage(view: AdminViewDep, start: str | None = None, end: str | None = None,
          group_by: Literal["day", "model", "key", "workspace", "endpoint", "request"] = "day",
          workspace: str | None = None, key: str | None = None, format: Literal["json", "csv"] = Query("json"),
          limit: int = Query(1000, description="group_by=request: at most this many rows, newest first")
          ) -> UsageReport | RequestReportOut | PlainTextResponse:
    if group_by == "request":
        requests = view.usage_requests(start, end, workspace, key, limit)
        if format == "csv":
            return _csv(requests.csv(), requests.filename)
        return RequestReportOut(start=requests.start.isoformat(), end=requests.end.isoformat(),
                                data=[RequestRow(**row) for row in requests.rows], has_more=requests.has_more)
    report = view.usage(start, end, group_by, workspace, key)
    if format == "csv":
        return _csv(report.csv(), report.filename)
    return UsageReport(start=report.start.isoformat(), end=report.end.isoformat(), group_by=group_by,
                       data=[UsageRow(**row) for row in report.rows], total=UsageRow(**report.totals()))


@router.get("/backends")
def backends(view: AdminViewDep, platform: PlatformDep) -> dict[str, object]:
    """Upstream engines: each model's replicas, up or ejected, in flight, failovers."""
    if not view.is_org_admin:
        raise Forbidden("The backends are the installation's: this needs an org-wide admin key")
    return {"object": "list", "data": platform.hub.backends_status()}
