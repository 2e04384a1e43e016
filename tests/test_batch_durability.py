"""A 200-line batch job survives kill -9 of its server: after the restart it completes
with 200 output lines, each custom_id once, and one usage record per line."""

import os
import signal
import time

from sqlalchemy import func, select

from alize.store.db import Database
from alize.store.tables import BatchLine
from tests.platform_helpers import EOS_BAN, sqlite_url, usage_rows
from tests.server import start_server
from tests.test_batch import MODEL, chat_line, file_lines, jsonl, upload, wait_job


def test_kill_9_midway_resumes_without_repeating_a_line(tmp_path):
    env = {"ALIZE_BATCH_CONCURRENCY": "4", "ALIZE_WORKER_ID": "durability-test"}  # the same worker, restarted
    server = start_server(tmp_path / "data", env=env)
    try:
        with server.client() as http:
            lines = [chat_line(i, max_tokens=6, logit_bias=EOS_BAN) for i in range(200)]
            job_id = http.post("/v1/batch/jobs", json={"input_files": [upload(http, jsonl(lines))], "model": MODEL,
                                                       "endpoint": "/v1/chat/completions"}).json()["id"]
            deadline = time.monotonic() + 120
            while http.get(f"/v1/batch/jobs/{job_id}").json()["completed_requests"] < 40:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
    finally:
        server.stop()
    db = Database(sqlite_url(server))
    try:
        with db.session() as session:
            done_before = session.scalar(select(func.count()).select_from(BatchLine))
    finally:
        db.close()
    assert 40 <= done_before < 200, "the kill must land midway"
    restarted = start_server(server.data_dir, env=env, create_keys=False)
    try:
        with restarted.client(server.key) as http:
            job = wait_job(http, job_id, timeout=300)
            assert job["status"] == "SUCCESS", job
            assert (job["total_requests"], job["succeeded_requests"], job["failed_requests"]) == (200, 200, 0)
            output = file_lines(http, job["output_file"])
    finally:
        restarted.stop()
    assert sorted(line["custom_id"] for line in output) == sorted(f"q{i}" for i in range(200))
    assert all(line["response"]["body"]["usage"]["completion_tokens"] == 6 for line in output)
    rows = [r for r in usage_rows(sqlite_url(server)) if r.id.startswith(f"batch-{job_id[:8]}-")]
    assert sorted(r.id for r in rows) == sorted(line["id"] for line in output)  # once per line, no more
    assert all(r.completion_tokens == 6 and r.status == 200 for r in rows)
