"""SIGTERM drains: the server stops admitting (503 with Retry-After, /ready 503), lets a
running stream finish whole, releases its batch jobs' leases, and exits 0 within the drain
time; a second signal exits at once."""

import signal
import time
from pathlib import Path

import httpx

from tests.platform_helpers import EOS_BAN
from tests.server import Server, start_server
from tests.test_faults import Stream

STREAM = {"model": "mistral-tiny", "stream": True, "max_tokens": 150, "logit_bias": EOS_BAN,
          "messages": [{"role": "user", "content": "Tell a story."}]}
ENDLESS = {**STREAM, "max_tokens": 5000, "min_tokens": 5000}


def under_way(server: Server, body: dict) -> Stream:
    """A stream that has sent its first chunks."""
    stream = Stream(server, server.key, body)
    stream.start()
    deadline = time.monotonic() + 60
    while len(stream.chunks) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    return stream


def test_sigterm_lets_a_stream_finish_refuses_new_requests_and_exits_0(tmp_path: Path):
    server = start_server(tmp_path / "data", env={"ALIZE_DRAIN_SECONDS": "60"})
    try:
        longer = under_way(server, {**STREAM, "max_tokens": 600})  # keeps the drain open a few seconds
        stream = under_way(server, STREAM)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {server.key}"},
                             json={"model": "mistral-tiny", "max_tokens": 2,
                                   "messages": [{"role": "user", "content": "Hi"}]})
        ready = httpx.get(server.url + "/ready")
        code = server.process.wait(timeout=60)
        took = time.monotonic() - signalled
        stream.join(timeout=10)
        longer.join(timeout=10)
    finally:
        server.stop()
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["object"] == "error" and "shutting down" in refused.json()["message"]
    assert ready.status_code == 503 and "stopping" in ready.text
    assert stream.is_done and not stream.broke
    assert stream.chunks[-1]["choices"][0]["finish_reason"] == "length"  # whole: all 150 tokens
    assert stream.chunks[-1]["usage"]["completion_tokens"] == 150
    assert longer.is_done and longer.chunks[-1]["usage"]["completion_tokens"] == 600
    assert code == 0 and took < 60
    assert "Traceback" not in server.log()


def test_the_drain_time_ends_what_remains_and_a_second_signal_exits_at_once(tmp_path: Path):
    server = start_server(tmp_path / "data", env={"ALIZE_DRAIN_SECONDS": "2"})
    try:
        stream = under_way(server, ENDLESS)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=30)
        took = time.monotonic() - signalled
        stream.join(timeout=10)
    finally:
        server.stop()
    assert 2 <= took < 8 and code == 0
    assert stream.is_done and stream.chunks[-1]["choices"][0]["finish_reason"] == "error"
    second = start_server(tmp_path / "data2", env={"ALIZE_DRAIN_SECONDS": "60"})
    try:
        under_way(second, ENDLESS)
        signalled = time.monotonic()
        second.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        second.process.send_signal(signal.SIGINT)
        code = second.process.wait(timeout=30)
        assert time.monotonic() - signalled < 10 and code == 130
    finally:
        second.stop()
