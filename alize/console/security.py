"""The console's guards: the session cookie, CSRF tokens, and the security headers of
every console response."""

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alize.services.admin import AdminView
from alize.services.console_sessions import SignedIn
from alize.services.platform import Platform

COOKIE = "alize_console"
PREFIX = "/console"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"

# No inline script or style anywhere: every script and stylesheet is a vendored file.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SignInNeeded(Exception):
    """No valid session: the page sends the browser to the sign-in form."""


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token."""


@dataclass(frozen=True)
class Console:
    """The signed-in admin of this request, with what it may see."""

    session: SignedIn
    view: AdminView
    platform: Platform

    @property
    def csrf(self) -> str:
        return self.session.csrf


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


async def signed_in(request: Request) -> Console:
    platform = platform_of(request)
    session = await platform.sessions.resume(request.cookies.get(COOKIE, ""))
    if session is None:
        raise SignInNeeded()
    console = Console(session, platform.admin_view(session.key), platform)
    if request.method not in ("GET", "HEAD"):
        await check_csrf(request, session.csrf)
    return console


async def check_csrf(request: Request, expected: str) -> None:
    """The token from the X-CSRF-Token header (htmx, fetch) or the form's csrf field."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        given = str((await request.form()).get(CSRF_FIELD) or "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfRefused()


ConsoleDep = Annotated[Console, Depends(signed_in)]


class SecurityHeaders:
    """Adds the CSP and anti-framing headers to every response under /console, and keeps
    pages out of caches (they show account data)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith(PREFIX + "/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in present]
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
