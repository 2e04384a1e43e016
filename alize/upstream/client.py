"""Talking to remote engines over OpenAI's wire: one client per replica (httpx, pooled
connections, explicit timeouts), and a pool that routes each request, moves it to the next
replica when it fails before its first byte, and keeps the replicas' health.

A failure before the first byte (connection refused or reset, a 5xx, a 429, a timeout) is
retried on the next replica and never reaches the client; once an answer has begun, a
failure is the caller's to end (UpstreamBroken). An upstream's own 4xx is the client's
error and is passed on with the upstream's message; when every replica failed, a 502 (504
for timeouts) names the backends tried."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

from alize.errors import UpstreamBroken, UpstreamError, UpstreamRefused, UpstreamTimeout
from alize.upstream.health import CHECK_EJECTED_S, CHECK_EVERY_S, HealthBook
from alize.upstream.router import Router

T = TypeVar("T")
Path = str | Callable[[str], str]  # an endpoint's path, or the path for a replica
DRAIN_S = 1.0  # how long a stream's end after [DONE] is waited for


def _path(path: Path, replica: str) -> str:
    return path if isinstance(path, str) else path(replica)
log = logging.getLogger(__name__)

__all__ = ["Stream", "UpstreamBroken", "UpstreamClient", "UpstreamError", "UpstreamPool", "UpstreamRefused",
           "UpstreamTimeout"]


@dataclass
class Failed(Exception):
    """A failure before the first byte: worth trying the next replica."""

    reason: str
    timeout: bool = False
    retry_after: float | None = None


def _message(response_text: str) -> tuple[str, str | None]:
    """An OpenAI- or Mistral-shaped error body's message and param."""
    try:
        body = json.loads(response_text)
    except ValueError:
        return response_text[:500] or "no message", None
    error = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        return str(error)[:500], None
    message = error.get("message") or error.get("detail") or response_text[:500]
    return str(message), error.get("param")


def _check(response: httpx.Response, text: str) -> None:
    if response.status_code in (401, 403):  # Alizé's own credentials for the upstream: not the client's fault
        raise Failed(f"HTTP {response.status_code}: the upstream refused Alizé's key (api_key_env): "
                     f"{_message(text)[0]}")
    if response.status_code == 429 or response.status_code >= 500:
        retry = response.headers.get("retry-after")
        raise Failed(f"HTTP {response.status_code}: {_message(text)[0]}",
                     retry_after=float(retry) if retry and retry.isascii() and retry.replace(".", "", 1).isdigit() else None)
    if response.status_code >= 400:
        message, param = _message(text)
        raise UpstreamRefused(response.status_code, message, param)


async def _drain(sse: AsyncIterator[Any]) -> None:
    """Reads a finished stream to its end, so that its connection goes back to the pool
    (httpx closes a connection whose response was not read through: a new TCP connection
    per streamed request cost about 2 ms of TTFT)."""
    try:
        async with asyncio.timeout(DRAIN_S):
            async for _ in sse:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass  # an upstream that lingers after [DONE] only loses its connection


@dataclass
class Stream:
    """An answer that has begun: its first event is in hand; the rest follow."""

    replica: str
    first: dict[str, Any]
    _events: AsyncIterator[dict[str, Any]]
    _exit: AsyncExitStack

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        yield self.first
        try:
            async for event in self._events:
                yield event
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamBroken(f"backend replica {self.replica} broke off the answer: {exc}") from exc

    async def aclose(self) -> None:
        """Closes the connection: the upstream sees the client go and stops generating."""
        await self._exit.aclose()


class UpstreamClient:
    """One replica: a pooled httpx client for its base URL (…/v1)."""

    def __init__(self, name: str, url: str, api_key: str | None = None, connect_timeout: float = 5.0,
                 read_timeout: float = 600.0, max_inflight: int = 64, health_path: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        self.url = url.rstrip("/")
        self.health_path = health_path
        self.inflight = 0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=self.url, headers=headers, transport=transport,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight))

    async def complete(self, path: str, body: Mapping[str, Any],
                       headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A whole (non-streamed) answer."""
        self.inflight += 1
        try:
            response = await self.http.post(path, json=body, headers=headers)
            _check(response, response.text)
            answer: dict[str, Any] = response.json()
            return answer
        except httpx.TimeoutException as exc:
            raise Failed(f"timed out ({type(exc).__name__})", timeout=True) from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise Failed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.inflight -= 1

    async def open_stream(self, path: str, body: Mapping[str, Any],
                          headers: Mapping[str, str] | None = None) -> Stream:
        """Sends a streamed request and waits for its first event (its first byte)."""
        stack = AsyncExitStack()
        self.inflight += 1
        stack.callback(self._done)
        try:
            source = await stack.enter_async_context(
                aconnect_sse(self.http, "POST", path, json=dict(body), headers=dict(headers or {})))
            if source.response.status_code >= 400:
                _check(source.response, (await source.response.aread()).decode("utf-8", "replace"))
            events = self._events(source.aiter_sse())
            first = await anext(events, None)
            if first is None:
                raise Failed("the stream ended before its first event")
            return Stream(self.name, first, events, stack)
        except BaseException as exc:
            await stack.aclose()
            if isinstance(exc, httpx.TimeoutException):
                raise Failed(f"timed out ({type(exc).__name__})", timeout=True) from exc
            if isinstance(exc, httpx.HTTPError | ValueError | UpstreamBroken):
                raise Failed(f"{type(exc).__name__}: {exc}") from exc  # nothing began: the next replica
            raise

    def _done(self) -> None:
        self.inflight -= 1

    async def _events(self, sse: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
        async for event in sse:
            if event.data.strip() == "[DONE]":
                await _drain(sse)
                return
            if event.data:
                yield json.loads(event.data)
        # every OpenAI-compatible engine ends a stream with [DONE]: a connection closed
        # before it is an answer cut short
        raise UpstreamBroken(f"backend replica {self.name} closed the stream before its end")

    async def check(self) -> tuple[bool, str | None]:
        """The health check: GET the health path (default: …/v1/models)."""
        try:
            if self.health_path:
                response = await self.http.get(str(httpx.URL(self.url).copy_with(path=self.health_path)))
            else:
                response = await self.http.get("/models")
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return (True, None) if response.status_code < 400 else (False, f"HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class UpstreamPool:
    """A backend's replicas: routing, failover before the first byte, health."""

    backend: str
    clients: dict[str, UpstreamClient]
    router: Router
    health: HealthBook
    clock: Callable[[], float] = time.monotonic
    failovers: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # requests each replica began to answer
    _resting: dict[str, float] = field(default_factory=dict)  # replica -> when its Retry-After ends
    _next_check: dict[str, float] = field(default_factory=dict)  # replica in service -> its next check

    def _order(self, key: bytes) -> list[str]:
        """The replicas to try, in order. With every replica ejected or resting, all of them
        (a replica may have just come back; failing without trying helps nobody)."""
        now = self.clock()
        available = [r for r in self.health.available() if self._resting.get(r, 0) <= now]
        inflight = {name: c.inflight for name, c in self.clients.items()}
        return self.router.order(key, available or None, inflight)

    async def complete(self, key: bytes, path: Path, body: Callable[[str], Mapping[str, Any]],
                       headers: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]]:
        """(replica, answer); body(replica) is the request to send it, to path (or path(replica):
        replicas may speak different wires)."""
        return await self._attempt(key, lambda client: client.complete(
            _path(path, client.name), body(client.name), headers))

    async def stream(self, key: bytes, path: Path, body: Callable[[str], Mapping[str, Any]],
                     headers: Mapping[str, str] | None = None) -> Stream:
        """An answer that has begun, from the first replica able to begin it."""
        return (await self._attempt(key, lambda client: client.open_stream(
            _path(path, client.name), body(client.name), headers)))[1]

    async def _attempt(self, key: bytes, send: Callable[[UpstreamClient], Awaitable[T]]) -> tuple[str, T]:
        tried: list[str] = []
        timeouts = 0
        for replica in self._order(key):
            try:
                result = await send(self.clients[replica])
            except Failed as failed:
                tried.append(f"{replica} ({failed.reason})")
                timeouts += failed.timeout
                self.failovers[replica] = self.failovers.get(replica, 0) + 1
                if failed.retry_after is not None:  # busy, not broken: rest it, do not eject it
                    self._resting[replica] = self.clock() + failed.retry_after
                else:
                    self.health.failure(replica, failed.reason)
                continue
            self.health.success(replica)
            self.served[replica] = self.served.get(replica, 0) + 1
            return replica, result
        error = UpstreamTimeout if tried and timeouts == len(tried) else UpstreamError
        raise error(f"backend {self.backend} did not answer: {'; '.join(tried)}")

    def status(self) -> list[dict[str, Any]]:
        """Each replica's state, for operators (/admin/v1/backends)."""
        now = self.clock()
        out = []
        for name, client in self.clients.items():
            health = self.health.state[name]
            until = health.ejected_until
            out.append({"name": name, "url": client.url, "up": until is None,
                        "back_in_s": None if until is None else round(max(0.0, until - now), 1),
                        "resting_s": round(max(0.0, self._resting.get(name, 0) - now), 1) or None,
                        "inflight": client.inflight, "served": self.served.get(name, 0),
                        "failovers": self.failovers.get(name, 0),
                        "ejections": health.ejections, "consecutive_failures": health.consecutive_failures,
                        "last_error": health.last_error})
        return out

    async def watch(self) -> None:
        """Active health checks, forever (a background task): every few seconds, and every
        second while a replica is ejected (it is taken back as soon as its cool-down is over
        and a check passes)."""
        while True:
            try:
                await self.check_all()
            except Exception:
                log.exception("health checks of backend %s failed", self.backend)
            ejected = len(self.health.available()) < len(self.clients)
            await asyncio.sleep(CHECK_EJECTED_S if ejected else CHECK_EVERY_S)

    async def check_all(self) -> None:
        """Checks every replica due, at once for an ejected one, every CHECK_EVERY_S otherwise."""
        now = self.clock()
        for name, client in self.clients.items():
            up = self.health.is_up(name)
            if self.health.check_due(name) and (not up or now >= self._next_check.get(name, 0)):
                self._next_check[name] = now + CHECK_EVERY_S
                ok, error = await client.check()
                self.health.checked(name, ok, error)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
