"""While the server drains (SIGTERM, Ctrl-C: api/server.py), new requests get a 503 with
Retry-After, so that a load balancer or a client's retry goes to another replica; probes
and metrics still answer."""

from starlette.types import ASGIApp, Receive, Scope, Send

from alize.api.errors import alize_error_response
from alize.errors import ShuttingDown

STILL_ANSWERED = ("/health", "/ready", "/metrics")


class RefuseWhileDraining:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app") if scope["type"] == "http" else None
        platform = getattr(app.state, "platform", None) if app is not None else None
        if platform is not None and platform.draining and scope["path"] not in STILL_ANSWERED:
            await alize_error_response(ShuttingDown())(scope, receive, send)
            return
        await self.app(scope, receive, send)
