"""Every error leaves as Mistral's flat JSON body:
{"object": "error", "message", "type", "param", "code"} (+ "detail" for 422)."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from alize.errors import AlizeError, UnprocessableRequest

log = logging.getLogger(__name__)

HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "payload_too_large"}


def error_body(message: Any, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": param, "code": code}


def error_response(status: int, message: Any, type_: str, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status, headers=headers)


def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        item = {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        if "input" in err:
            item["input"] = _jsonable(err["input"])
        out.append(item)
    return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def alize_error_response(exc: AlizeError) -> JSONResponse:
    """An AlizeError as its status, Mistral's body and its headers (also for middleware,
    which exception handlers do not reach)."""
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _alize_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AlizeError)
    if exc.status_code >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    return alize_error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    invalid_json = [e for e in raw if e.get("type") == "json_invalid"]
    if invalid_json:
        reason = (invalid_json[0].get("ctx") or {}).get("error")
        return error_response(400, "The request body is not valid JSON" + (f": {reason}" if reason else ""),
                              "invalid_request_error")
    errors = _clean(raw)
    body = UnprocessableRequest.from_errors(errors).body()
    body["detail"] = errors
    return JSONResponse(body, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), HTTP_TYPES.get(exc.status_code, "http_error"),
                          headers=getattr(exc, "headers", None))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return error_response(500, "Internal server error", "internal_error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AlizeError, _alize_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
