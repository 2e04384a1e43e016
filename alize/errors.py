"""The error tree of Alizé. Lower layers raise these; the HTTP edge (api/errors.py)
translates each into a status code and a Mistral-shaped JSON body, once."""

from typing import Any


class AlizeError(Exception):
    status_code = 500
    type = "internal_error"
    code: str | None = None
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict[str, str | None]:
        """Mistral's error body."""
        return {"object": "error", "message": self.message, "type": self.type, "param": self.param,
                "code": self.code}


class InvalidRequest(AlizeError):
    status_code = 400
    type = "invalid_request_error"


class UnprocessableRequest(InvalidRequest):
    """The body does not match the endpoint's schema (422, as FastAPI answers)."""

    status_code = 422

    @classmethod
    def from_errors(cls, errors: list[Any]) -> "UnprocessableRequest":
        """Named after the first of pydantic's errors (its location in the body)."""
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        message = f"Invalid request: {where}: {first['msg']}" if where else f"Invalid request: {first['msg']}"
        return cls(message, param=where or None)


class ContextOverflow(InvalidRequest):
    """The prompt plus the requested completion does not fit in the model's context."""

    type = "context_length_exceeded"


class MessageOrderError(InvalidRequest):
    type = "invalid_request_message_order"
    code = "3230"


class FunctionCallError(InvalidRequest):
    """A tool call in the history is malformed (Mistral's code 3280)."""

    type = "invalid_function_call"
    code = "3280"


class Unsupported(InvalidRequest):
    type = "unsupported_feature"


class Unauthorized(AlizeError):
    status_code = 401
    type = "unauthorized"


class Forbidden(AlizeError):
    status_code = 403
    type = "forbidden"


class TooManyRequests(AlizeError):
    """429: come back later; the headers say when (Retry-After) and why."""

    status_code = 429

    def __init__(self, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.headers = headers


class RateLimited(TooManyRequests):
    """A rate limit, quota or budget has no room for this request."""

    type = "rate_limited"


class NotFound(AlizeError):
    status_code = 404
    type = "not_found"


class ModelNotFound(NotFound):
    type = "invalid_model"
    code = "1500"


class PayloadTooLarge(AlizeError):
    status_code = 413
    type = "payload_too_large"


class Overloaded(AlizeError):
    status_code = 503
    type = "overloaded"


class ShuttingDown(Overloaded):
    """The server is draining (SIGTERM): the client should send the request again elsewhere."""

    headers = {"Retry-After": "1"}

    def __init__(self) -> None:
        super().__init__("This server is shutting down; send the request again (another replica, or this "
                         "one once restarted)")


class QueueFull(TooManyRequests):
    """The model's admission queue is full."""

    type = "queue_full"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message, {"Retry-After": str(max(1, retry_after_s))})


class EngineFailure(AlizeError):
    status_code = 500
    type = "engine_error"


class StorageError(AlizeError):
    """Stored bytes are damaged or missing (a disk or an operator's fault, not the client's)."""

    type = "storage_error"


class UpstreamError(AlizeError):
    """Every replica of an upstream backend failed (upstream/client.py)."""

    status_code = 502
    type = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    type = "upstream_timeout"


class UpstreamRefused(AlizeError):
    """The upstream refused the request itself (its 4xx): the client's error, in Mistral's shape."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message, param=param)
        self.status_code = status


class UpstreamBroken(UpstreamError):
    """The answer broke off after it had begun."""


class ConfigError(AlizeError):
    """A configuration file or setting is wrong; raised at start-up, never per request."""
