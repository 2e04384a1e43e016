"""While the server drains (SIGTERM, Ctrl-C: api/server.py), new requests get a 503 with
Retry-After, so that a load balancer or a client's retry goes to another replica; probes
and metrics still answer."""

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from alize.errors import Overloaded

STILL_ANSWERED = ("/health", "/ready", "/metrics")


class RefuseWhileDraining:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app") if scope["type"] == "http" else None
        platform = getattr(app.state, "platform", None) if app is not None else None
        if platform is not None and platform.draining and scope["path"] not in STILL_ANSWERED:
            error = Overloaded("This server is shutting down; send the request again (another replica, or this "
                               "one once restarted)")
            response = JSONResponse(error.body(), status_code=error.status_code, headers={"Retry-After": "1"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
