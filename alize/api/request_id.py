"""Request ids: the client's x-request-id (when it is a sane token) or a new one, sent back
on every answer and error, written in every log line about the request (a logging filter
reads it from a context variable) and in its usage record. One access line per request:
method, path, status, model, key name (never the secret), tokens, time to first byte and
total time."""

import contextvars
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alize.api.metering import call_of

SCOPE_KEY = "alize.request_id"
HEADER = b"x-request-id"
GIVEN = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access = logging.getLogger("alize.access")


def request_id_of(scope: Scope) -> str | None:
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None


class RequestIdFilter(logging.Filter):
    """Gives every log record the id of the request it was written for ("-" outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current.get()
        return True


def _given(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == HEADER:
            text = value.decode("latin-1").strip()
            return text if GIVEN.fullmatch(text) else None
    return None


class RequestId:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _given(scope) or uuid.uuid4().hex
        scope[SCOPE_KEY] = request_id
        token = current.set(request_id)
        started = time.monotonic()
        first_byte: float | None = None
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal first_byte, status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            elif message["type"] == "http.response.body" and first_byte is None and message.get("body"):
                first_byte = time.monotonic()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _access_line(scope, status, started, first_byte)
            current.reset(token)


def _access_line(scope: Scope, status: int, started: float, first_byte: float | None) -> None:
    call = call_of(scope)
    fields: dict[str, object] = {"method": scope.get("method"), "path": scope.get("path"), "status": status}
    parts = [str(scope.get("method")), str(scope.get("path")), str(status)]
    if call is not None and call.key is not None:
        model = call.entry.id if call.entry else None
        fields |= {"model": model, "key": call.key.name, "prompt_tokens": call.prompt_tokens,
                   "completion_tokens": call.completion_tokens}
        parts += [f"model={model or '-'}", f"key={call.key.name!r}", f"tokens={call.prompt_tokens}+{call.completion_tokens}"]
    if first_byte is not None:
        fields["first_byte_ms"] = round((first_byte - started) * 1000)
        parts.append(f"first_byte={fields['first_byte_ms']}ms")
    fields["total_ms"] = round((time.monotonic() - started) * 1000)
    parts.append(f"total={fields['total_ms']}ms")
    access.info(" ".join(parts), extra={"fields": fields})
