"""The models served, and the playground: a chat through the public API with a
short-lived key of the chosen workspace, made and held by the console for the session."""

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from alize.console.render import page
from alize.console.security import Console, ConsoleDep
from alize.store.accounts import utcnow

router = APIRouter(prefix="/console", include_in_schema=False)

KEY_LIFETIME = timedelta(hours=1)
RENEW_BEFORE = timedelta(minutes=10)  # a key with less left than this is replaced


@dataclass
class PlaygroundKeys:
    """Short-lived keys by (session, workspace). The secret lives only in this process's
    memory and in the signed-in browser's page; the key expires by itself within the hour,
    and is revoked at sign-out."""

    held: dict[tuple[str, str], tuple[str, str, datetime]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @staticmethod
    def _session(console: Console) -> str:
        return hashlib.sha256(console.session.token.encode()).hexdigest()

    async def get(self, console: Console, workspace_id: str) -> tuple[str, datetime]:
        ws = console.view.workspace(workspace_id)  # one in this admin's view, or 404
        slot = (self._session(console), ws.id)
        async with self.lock:
            held = self.held.get(slot)
            if held is not None and held[2] - utcnow() > RENEW_BEFORE:
                return held[1], held[2]
            key, secret = await asyncio.to_thread(
                console.view.create_key, f"console playground ({console.session.key.name})", ws.name, None,
                KEY_LIFETIME / timedelta(days=1))
            assert key.expires_at is not None
            self.held[slot] = (key.id, secret, key.expires_at)
            return secret, key.expires_at

    async def forget(self, console: Console) -> None:
        """Sign-out: this session's keys are revoked."""
        session = self._session(console)
        async with self.lock:
            mine = [slot for slot in self.held if slot[0] == session]
            for slot in mine:
                key_id = self.held.pop(slot)[0]
                await asyncio.to_thread(console.platform.accounts.revoke_key, key_id)


def playground_keys(request: Request) -> PlaygroundKeys:
    state = request.app.state
    if not hasattr(state, "playground_keys"):
        state.playground_keys = PlaygroundKeys()
    keys: PlaygroundKeys = state.playground_keys
    return keys


def _chat_models(console: Console) -> list[object]:
    return [m for m in console.platform.hub.registry.models() if "completion_chat" in m.capabilities]


def _backends(console: Console) -> list[dict[str, object]]:
    """Upstream engines' health: the installation's, shown to org-wide admins only."""
    return console.platform.hub.backends_status() if console.view.is_org_admin else []


@router.get("/models")
async def models_page(request: Request, console: ConsoleDep) -> Response:
    registry = console.platform.hub.registry
    return page(request, "models.html", console, models=registry.models(), source=registry.source,
                backends=_backends(console))


@router.get("/backends/rows")
async def backend_rows(request: Request, console: ConsoleDep) -> Response:
    return page(request, "_backend_rows.html", console, backends=_backends(console))


@router.get("/playground")
async def playground_page(request: Request, console: ConsoleDep) -> Response:
    return page(request, "playground.html", console, models=_chat_models(console),
                workspaces=console.view.workspaces())


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace: str


@router.post("/api/playground-key")
async def playground_key(request: Request, body: KeyRequest, console: ConsoleDep) -> dict[str, str]:
    """The session's short-lived key for a workspace (JSON; needs the X-CSRF-Token header)."""
    secret, expires = await playground_keys(request).get(console, body.workspace)
    return {"key": secret, "expires_at": expires.isoformat()}
