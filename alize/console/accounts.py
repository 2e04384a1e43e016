"""API keys (create, rotate, revoke) and workspaces (create, limits, consumption)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from alize.console.render import page
from alize.console.security import Console, ConsoleDep
from alize.errors import AlizeError, InvalidRequest
from alize.services.accounts import LimitsSpec
from alize.store.accounts import KeyInfo, Limits, utcnow

router = APIRouter(prefix="/console", include_in_schema=False)
T = TypeVar("T")

LIMIT_FIELDS = ("rpm", "tpm", "monthly_tokens")


def key_state(key: KeyInfo) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= utcnow():
        return "expired"
    return "active"


def limits_text(limits: Limits) -> str:
    parts = [f"{limits.rpm} rpm" if limits.rpm is not None else "",
             f"{limits.tpm:,} tpm" if limits.tpm is not None else "",
             f"{limits.monthly_tokens:,} tokens/month" if limits.monthly_tokens is not None else "",
             f"€{limits.monthly_budget_nano / 1e9:,.2f}/month" if limits.monthly_budget_nano is not None else ""]
    return ", ".join(p for p in parts if p) or "none"


def _number(form: FormData, name: str, kind: Callable[[str], Any]) -> Any:
    text = str(form.get(name) or "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise InvalidRequest(f"{name.replace('_', ' ')} must be a number, not {text!r}", param=name) from None


def limits_from(form: FormData) -> dict[str, Any]:
    """Every limit field of the form; an empty one is no limit."""
    values = {name: _number(form, name, int) for name in LIMIT_FIELDS}
    values["budget_eur"] = str(form.get("budget_eur") or "").strip() or None
    return values


async def _keys_page(request: Request, console: Console, status: int = 200, **context: Any) -> Response:
    view = console.view
    keys = await asyncio.to_thread(view.keys)
    last_used = await asyncio.to_thread(console.platform.dashboard.last_used)
    models = [m.id for m in console.platform.hub.registry.models()]
    context = {"secret": None, "secret_title": "", **context}
    return page(request, "keys.html", console, status, keys=keys, workspaces=view.workspaces(), models=models,
                last_used=last_used, key_state=key_state, limits_text=limits_text, **context)


@router.get("/keys")
async def keys_page(request: Request, console: ConsoleDep) -> Response:
    return await _keys_page(request, console)


async def _act(request: Request, console: Console, render: Callable[..., Awaitable[Response]],
               work: Callable[[], T], done: Callable[[T], dict[str, Any]]) -> Response:
    """A form's action, run off the event loop: the page again with what it did, or with why
    it was refused (its 4xx; nothing changed)."""
    try:
        result = await asyncio.to_thread(work)
    except AlizeError as exc:
        return await render(request, console, exc.status_code, error=exc.message)
    return await render(request, console, **done(result))


@router.post("/keys")
async def create_key(request: Request, console: ConsoleDep) -> Response:
    form = await request.form()
    role = str(form.get("role") or "")
    return await _act(request, console, _keys_page, lambda: console.view.create_key(
        str(form.get("name") or ""), str(form.get("workspace") or "") or None,
        [str(m) for m in form.getlist("models")] or None, _number(form, "expires_in_days", float),
        LimitsSpec(**limits_from(form)), role in ("workspace-admin", "org-admin"), role == "workspace-admin"),
        lambda made: {"status": 201, "secret": made[1], "secret_title": f"The secret of {made[0].name!r} "
                      f"({made[0].prefix}…)", "notice": f"Key {made[0].name!r} created in workspace "
                      f"{made[0].workspace.name!r}."})


def _rotated(made: tuple[KeyInfo, str]) -> dict[str, Any]:
    key, secret = made
    until = f"; the old secret works until {key.previous_valid_until:%Y-%m-%d %H:%M} UTC" \
        if key.previous_valid_until else "; the old secret has stopped working"
    return {"secret": secret, "secret_title": f"The new secret of {key.name!r}",
            "notice": f"Key {key.name!r} rotated{until}."}


@router.post("/keys/{key_id}/rotate")
async def rotate_key(request: Request, key_id: str, console: ConsoleDep) -> Response:
    form = await request.form()
    return await _act(request, console, _keys_page,
                      lambda: console.view.rotate_key(key_id, _number(form, "grace_seconds", float) or 0.0), _rotated)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, console: ConsoleDep) -> Response:
    return await _act(request, console, _keys_page, lambda: console.view.revoke_key(key_id),
                      lambda key: {"notice": f"Key {key.name!r} revoked: requests using it are refused."})


async def _workspaces_page(request: Request, console: Console, status: int = 200, **context: Any) -> Response:
    consumption = await asyncio.to_thread(console.platform.dashboard.consumption, console.view)
    return page(request, "workspaces.html", console, status, consumption=consumption, **context)


@router.get("/workspaces")
async def workspaces_page(request: Request, console: ConsoleDep) -> Response:
    return await _workspaces_page(request, console)


@router.post("/workspaces")
async def create_workspace(request: Request, console: ConsoleDep) -> Response:
    form = await request.form()
    return await _act(request, console, _workspaces_page,
                      lambda: console.view.create_workspace(str(form.get("name") or ""), LimitsSpec(**limits_from(form))),
                      lambda ws: {"status": 201, "notice": f"Workspace {ws.name!r} created."})


@router.post("/workspaces/{ref}/limits")
async def set_limits(request: Request, ref: str, console: ConsoleDep) -> Response:
    form = await request.form()
    return await _act(request, console, _workspaces_page,
                      lambda: console.view.set_workspace_limits(ref, limits_from(form)),
                      lambda ws: {"notice": f"Limits of {ws.name!r} saved: {limits_text(ws.limits)}."})
