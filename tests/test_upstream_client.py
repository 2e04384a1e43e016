"""The upstream client against real HTTP servers: a real `alize serve` (OpenAI's wire) as the
healthy replica, a port with nothing listening, and a scripted server (stdlib http.server)
for the failures a fleet produces: 503, 429 with Retry-After, a 4xx, a hang, a stream that
breaks after it began."""

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alize.upstream.client import (
    UpstreamBroken,
    UpstreamClient,
    UpstreamError,
    UpstreamPool,
    UpstreamRefused,
    UpstreamTimeout,
)
from alize.upstream.health import HealthBook
from alize.upstream.router import Router
from tests.platform_helpers import EOS_BAN, sqlite_url, usage_rows
from tests.server import free_port

CHAT = {"model": "mistral-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


class Scripted(BaseHTTPRequestHandler):
    mode = "503"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._send(200 if self.mode == "healthy" else 503, {"object": "list", "data": []})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "503":
            self._send(503, {"error": {"message": "engine overloaded"}})
        elif self.mode == "429":
            self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "30"})
        elif self.mode == "400":
            self._send(400, {"error": {"message": "max_tokens is too large", "param": "max_tokens"}})
        elif self.mode == "hang":
            time.sleep(3)
            self._send(200, {})
        elif self.mode == "break":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def scripted(mode: str, port: int = 0) -> ThreadingHTTPServer:
    handler = type(f"Scripted{mode}", (Scripted,), {"mode": mode})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.handle_error = lambda *_: None  # a client that gave up (the timeout test): not worth a traceback
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def url_of(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def pool(replicas: dict[str, str], policy="round-robin", read_timeout=60.0, clock=time.monotonic,
         key: str | None = None) -> UpstreamPool:
    clients = {name: UpstreamClient(name, url, api_key=key, read_timeout=read_timeout) for name, url in replicas.items()}
    return UpstreamPool("gpu", clients, Router(list(replicas), policy), HealthBook(list(replicas), clock=clock),
                        clock=clock)


def test_failures_before_the_first_byte_move_to_the_next_replica(server):
    flaky = scripted("503")

    async def scenario() -> None:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        upstream = pool({"dead": dead, "flaky": url_of(flaky), "alive": server.v1}, key=server.key)
        replica, answer = await upstream.complete(b"k", "/chat/completions", lambda _: CHAT)
        assert replica == "alive" and answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"]
        assert upstream.failovers == {"dead": 1, "flaky": 1}
        stream = await upstream.stream(b"k", "/chat/completions", lambda _: {**CHAT, "stream": True,
                                                                             "stream_options": {"include_usage": True}})
        events = [e async for e in stream]
        await stream.aclose()
        assert stream.replica == "alive" and events[-1]["usage"]["completion_tokens"] == 3
        await upstream.aclose()

    asyncio.run(scenario())
    flaky.shutdown()


def test_an_upstream_4xx_is_the_clients_error_and_no_failover(server):
    refusing = scripted("400")

    async def scenario() -> None:
        upstream = pool({"refusing": url_of(refusing), "alive": server.v1}, key=server.key)
        with pytest.raises(UpstreamRefused) as refused:
            await upstream.complete(b"k", "/chat/completions", lambda _: CHAT)
        assert refused.value.status_code == 400 and refused.value.param == "max_tokens"
        assert refused.value.body()["message"] == "max_tokens is too large" and upstream.failovers == {}
        alize_refusal = pool({"alive": server.v1}, key=server.key)
        wrong_key = pool({"alive": server.v1}, key="alz-wrong")
        with pytest.raises(UpstreamError) as misconfigured:  # not passed on as the client's 401
            await wrong_key.complete(b"k", "/chat/completions", lambda _: CHAT)
        assert misconfigured.value.status_code == 502 and "refused Alizé's key" in misconfigured.value.message
        await wrong_key.aclose()
        with pytest.raises(UpstreamRefused) as bad_model:
            await alize_refusal.complete(b"k", "/chat/completions", lambda _: {**CHAT, "model": "no-such-model"})
        assert bad_model.value.status_code == 404 and "no-such-model" in bad_model.value.message
        await upstream.aclose()
        await alize_refusal.aclose()

    asyncio.run(scenario())
    refusing.shutdown()


def test_a_429_rests_the_replica_without_ejecting_it(server):
    busy = scripted("429")

    async def scenario() -> None:
        upstream = pool({"busy": url_of(busy), "alive": server.v1}, key=server.key)
        for _ in range(4):
            replica, _ = await upstream.complete(b"k", "/chat/completions", lambda _: CHAT)
            assert replica == "alive"
        assert upstream.failovers == {"busy": 1}  # tried once, then left alone for its Retry-After
        assert upstream.health.is_up("busy")
        await upstream.aclose()

    asyncio.run(scenario())
    busy.shutdown()


def test_when_every_replica_fails_the_error_names_them():
    down, hanging = scripted("503"), scripted("hang")

    async def scenario() -> None:
        upstream = pool({"a": url_of(down), "b": f"http://127.0.0.1:{free_port()}/v1"})
        with pytest.raises(UpstreamError) as failed:
            await upstream.complete(b"k", "/chat/completions", lambda _: CHAT)
        assert failed.value.status_code == 502 and "backend gpu" in failed.value.message
        assert "a (HTTP 503: engine overloaded)" in failed.value.message and "b (ConnectError" in failed.value.message
        slow = pool({"slow": url_of(hanging)}, read_timeout=0.5)
        with pytest.raises(UpstreamTimeout) as timed_out:
            await slow.complete(b"k", "/chat/completions", lambda _: CHAT)
        assert timed_out.value.status_code == 504
        await upstream.aclose()
        await slow.aclose()

    asyncio.run(scenario())
    down.shutdown()
    hanging.shutdown()


def test_a_stream_that_breaks_after_it_began_raises_for_the_caller_to_end():
    breaking = scripted("break")

    async def scenario() -> None:
        upstream = pool({"breaking": url_of(breaking)})
        stream = await upstream.stream(b"k", "/chat/completions", lambda _: {**CHAT, "stream": True})
        assert stream.first["choices"][0]["delta"]["content"] == "Hel"
        with pytest.raises(UpstreamBroken):
            async for _ in stream:
                pass
        await stream.aclose()
        await upstream.aclose()

    asyncio.run(scenario())
    breaking.shutdown()


def test_closing_a_stream_cancels_the_upstream_request(server):
    async def scenario() -> str:
        upstream = pool({"alive": server.v1}, key=server.key)
        stream = await upstream.stream(b"k", "/chat/completions", lambda _: {
            **CHAT, "max_tokens": 400, "stream": True, "logit_bias": EOS_BAN})
        seen = []
        async for event in stream:
            seen.append(event)
            if len(seen) == 4:
                break
        await stream.aclose()
        assert upstream.clients["alive"].inflight == 0
        await upstream.aclose()
        return seen[0]["id"]

    request_id = asyncio.run(scenario())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not usage_rows(sqlite_url(server), id=request_id):
        time.sleep(0.2)
    row = usage_rows(sqlite_url(server), id=request_id)[0]
    assert row.status == 499 and row.completion_tokens < 400  # the upstream stopped generating


def test_health_checks_eject_and_take_back_a_replica():
    port = free_port()
    now = [0.0]
    upstream = pool({"a": f"http://127.0.0.1:{port}/v1"}, clock=lambda: now[0])

    async def scenario() -> None:
        await upstream.check_all()
        assert not upstream.health.is_up("a")
        returned = scripted("healthy", port)
        await upstream.check_all()
        assert not upstream.health.is_up("a")  # cool-down not over
        now[0] += upstream.health.state["a"].cooldown_s
        await upstream.check_all()
        assert upstream.health.is_up("a")
        returned.shutdown()
        await upstream.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("parts, expected", [
    (["My ans", "wer: blue"], " blue"),  # the upstream repeats the prefix, across deltas
    (["My answer:"], ""),
    ([" blue", " sky"], " blue sky"),  # it does not (vLLM's continue_final_message)
    (["My", " dog"], "My dog"),  # it starts like the prefix, then differs
])
def test_a_repeated_prefix_is_dropped_once(parts, expected):
    from alize.services.upstream_chat import _Unecho

    unecho = _Unecho("My answer:")
    out = "".join(unecho.feed(p) for p in parts) + unecho.feed("", end=True)
    assert out == expected
    assert unecho.feed("My answer:") == "My answer:"  # decided: later text passes as it is
