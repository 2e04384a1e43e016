"""kill -9 in the middle of 20 streams: every request that finished is in the usage table
exactly once after the restart."""

import os
import signal
import threading
import time

import httpx

from tests.platform_helpers import EOS_BAN, sqlite_url, usage_rows
from tests.server import start_server


def test_kill_9_loses_no_finished_request(tmp_path):
    server = start_server(tmp_path / "data")
    finished: list[str] = []
    started: list[str] = []
    lock = threading.Lock()

    def stream(i: int) -> None:
        body = {"model": "mistral-tiny", "stream": True, "max_tokens": 8 + 12 * i, "min_tokens": 8 + 12 * i,
                "logit_bias": EOS_BAN, "messages": [{"role": "user", "content": f"Story number {i}"}]}
        request_id = None
        try:
            with server.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if request_id is None and line.startswith("data: {"):
                        request_id = line.split('"id":"', 1)[1].split('"', 1)[0]
                        with lock:
                            started.append(request_id)
                    if line == "data: [DONE]":
                        with lock:
                            finished.append(request_id)
        except httpx.HTTPError:
            pass  # cut by the kill

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(20)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(finished) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.process.pid, signal.SIGKILL)
        with lock:
            done = list(finished)
        for t in threads:
            t.join(timeout=30)
    finally:
        server.stop()
    assert 8 <= len(done) < 20, "the kill must land while some streams still run"
    restarted = start_server(server.data_dir, create_keys=False)
    try:
        rows = usage_rows(sqlite_url(server))
        ids = [r.id for r in rows]
        assert len(ids) == len(set(ids))
        for request_id in done:
            assert ids.count(request_id) == 1, request_id
            row = next(r for r in rows if r.id == request_id)
            assert row.status == 200 and row.completion_tokens > 0
        restarted.key = server.key
        with restarted.client() as client:  # and the server works again
            assert client.post("/v1/chat/completions", json={"model": "mistral-tiny", "max_tokens": 1,
                               "messages": [{"role": "user", "content": "Hi"}]}).status_code == 200
    finally:
        restarted.stop()
