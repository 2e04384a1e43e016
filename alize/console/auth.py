"""Signing in with an admin key, and out."""

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from alize.console.catalog import playground_keys
from alize.console.render import page
from alize.console.security import COOKIE, ConsoleDep, CsrfRefused, SignInNeeded, is_https, platform_of
from alize.errors import AlizeError

router = APIRouter(prefix="/console", include_in_schema=False)

SIGN_IN_COOKIE = "alize_console_sign_in"  # the sign-in form's own CSRF token (double submit)


def _set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, path="/console", httponly=True, samesite="strict", secure=is_https(request))


def _sign_in_form(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(request, "sign_in.html", None, status, error=error, sign_in_csrf=token)
    _set_cookie(response, request, SIGN_IN_COOKIE, token)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    if await platform_of(request).sessions.resume(request.cookies.get(COOKIE, "")) is not None:
        return RedirectResponse("/console/", status_code=303)
    return _sign_in_form(request)


@router.post("/sign-in")
async def sign_in(request: Request, key: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
        return _sign_in_form(request, "The sign-in form had expired; please try again.", 403)
    try:
        session = await platform_of(request).sessions.sign_in(key)
    except AlizeError as exc:
        return _sign_in_form(request, exc.message, exc.status_code)
    response = RedirectResponse("/console/", status_code=303)
    _set_cookie(response, request, COOKIE, session.token)
    response.delete_cookie(SIGN_IN_COOKIE, path="/console")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, console: ConsoleDep) -> Response:
    await console.platform.sessions.sign_out(console.session.token)
    await playground_keys(request).forget(console)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict", secure=is_https(request))
    return response


@router.get("")
async def bare() -> Response:
    return RedirectResponse("/console/", status_code=308)


async def _sign_in_needed(request: Request, _exc: Exception) -> Response:
    if request.url.path.startswith("/console/api/"):
        return JSONResponse({"object": "error", "message": "Sign in to the console first", "type": "unauthorized",
                             "param": None, "code": None}, status_code=401)
    if request.headers.get("hx-request"):  # htmx: reload the whole page on the sign-in form
        return Response(status_code=200, headers={"HX-Redirect": "/console/sign-in"})
    return RedirectResponse("/console/sign-in", status_code=303)


async def _csrf_refused(request: Request, _exc: Exception) -> Response:
    message = "This form was out of date (its CSRF token is missing or wrong): reload the page and try again."
    if request.url.path.startswith("/console/api/") or not request.headers.get("accept", "").startswith("text/html"):
        return JSONResponse({"object": "error", "message": message, "type": "forbidden", "param": None,
                             "code": "csrf"}, status_code=403)
    return page(request, "error.html", None, 403, error=message)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SignInNeeded, _sign_in_needed)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
