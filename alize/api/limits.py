"""ASGI middleware that refuses request bodies over a size limit with a 413."""

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alize.api.errors import error_body


def _message(max_bytes: int) -> str:
    return f"Request body is larger than {max_bytes} bytes"


class BodyTooLarge(HTTPException):
    """Raised while the body is read (a chunked body has no Content-Length to refuse it by):
    an HTTPException, so that FastAPI's body parsing lets it through as the 413 it is
    instead of turning it into a 400 "error parsing the body"."""

    def __init__(self, max_bytes: int):
        super().__init__(413, _message(max_bytes))


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None):
        self.app = app
        self.default_max = max_bytes
        # paths (regular expressions, matched whole) with their own limit: file uploads
        self.larger = [(re.compile(path), limit) for path, limit in (larger or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        max_bytes = next((limit for pattern, limit in self.larger if pattern.fullmatch(path)), self.default_max)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await self._reject(send, max_bytes)
            return
        received = 0
        is_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal is_started
            if message["type"] == "http.response.start":
                is_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not is_started:
                await self._reject(send, max_bytes)

    @staticmethod
    async def _reject(send: Send, max_bytes: int) -> None:
        body = json.dumps(error_body(_message(max_bytes), "payload_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
