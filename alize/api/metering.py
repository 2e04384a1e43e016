"""ASGI middleware: a metered Call for every model request, recorded however it ends.

The use case records a success itself, before the client sees the end of the answer.
Here an error response is recorded before its status goes out, and once the response is
over whatever is still unrecorded is recorded with its status (499 when a stream was cut
because the client left, 500 for an exception)."""

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alize.api.disconnect import ClientGone
from alize.services.metering import CLIENT_CLOSED, Call, endpoint_of

log = logging.getLogger(__name__)

SCOPE_KEY = "alize.call"


def call_of(scope: Scope) -> Call | None:
    slot = scope.get(SCOPE_KEY)
    return slot[0] if slot else None


def hold_call(scope: Scope, call: Call) -> bool:
    """Hands the request's call to the middleware (False: the path is not metered)."""
    slot = scope.get(SCOPE_KEY)
    if slot is None:
        return False
    slot[0] = call
    return True


class Metering:
    """Records every metered request however it ends. The call itself is made, once, by the
    metered_call dependency (api/deps.py) when the key is known; the middleware gives it a
    slot in the scope, adds its rate-limit headers, and records what the use case did not."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or endpoint_of(scope.get("path", "")) is None:
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = [None]  # a list: scopes copied on the way down still share it
        status: int | None = None

        async def metered_send(message: Message) -> None:
            nonlocal status
            call = call_of(scope)
            if message["type"] == "http.response.start":
                status = message["status"]
                if call is not None:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    extra = [(k.lower().encode(), v.encode()) for k, v in call.headers.items()
                             if k.lower().encode() not in present]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
                    if status >= 400:
                        await _record(call, status)  # before the client sees the error
            await send(message)

        try:
            await self.app(scope, receive, metered_send)
        except ClientGone:
            status = CLIENT_CLOSED  # nobody to answer: the work was cancelled
        except Exception:
            status = status if status is not None and status >= 400 else 500
            raise
        finally:
            call = call_of(scope)  # None: refused before its key was known (401), nothing to bill
            if call is not None:
                final = status if status is not None else CLIENT_CLOSED
                if final < 400 and not call.recorded:
                    final = CLIENT_CLOSED  # the answer started but never reached its end
                await _record(call, final)


async def _record(call: Call, status: int) -> None:
    """Records the call once (later calls do nothing); a failure to record is logged, never
    turned into another error for the client."""
    try:
        await call.finish(status)
    except Exception:
        log.exception("could not record the usage of request %s", call.id)


def _depends_on(dependant: Dependant, target: Callable[..., Any]) -> bool:
    return any(d.call is target or _depends_on(d, target) for d in dependant.dependencies)


def api_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every API route, those of included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers whole
        if included is not None:
            yield from api_routes(included.routes, prefix + route.include_context.prefix)


def unmetered_model_routes(routes: Iterable[Any], metered_call: Callable[..., Any]) -> list[str]:
    """Routes that take a metered call but that the middleware would not meter (their
    path is not a metered one (endpoint_of), or they are not POST): each is a route that would
    run a model with no limits and no usage record."""
    out = []
    for path, route in api_routes(routes):
        if _depends_on(route.dependant, metered_call) and (endpoint_of(path) is None or route.methods != {"POST"}):
            out.append(f"{','.join(sorted(route.methods))} {path}")
    return out
