"""x-request-id: taken from the client when sane, made otherwise, returned on every answer
and error, written in the access line of the log and in the usage record, and found again
in the per-request usage export."""

import csv
import io
import json
import re
import time

import httpx

from tests.platform_helpers import sqlite_url, usage_rows

CHAT = {"model": "mistral-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
MADE = re.compile(r"[0-9a-f]{32}")


def test_every_answer_and_error_carries_a_request_id(server):
    with server.client() as client:
        assert MADE.fullmatch(client.get("/v1/models").headers["x-request-id"])
        assert client.get("/v1/models", headers={"x-request-id": "client-abc.123"}).headers["x-request-id"] == \
            "client-abc.123"
        for bad in ("has space", "x" * 129, "<script>"):
            assert MADE.fullmatch(client.get("/v1/models", headers={"x-request-id": bad}).headers["x-request-id"])
        invalid = client.post("/v1/chat/completions", json={"model": "mistral-tiny"}, headers={"x-request-id": "r-422"})
        assert invalid.status_code == 422 and invalid.headers["x-request-id"] == "r-422"
        assert MADE.fullmatch(client.get("/no/such/route").headers["x-request-id"])
    refused = httpx.get(server.url + "/v1/models", headers={"x-request-id": "r-401"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "r-401"
    assert MADE.fullmatch(httpx.get(server.url + "/console/sign-in").headers["x-request-id"])


def test_the_request_id_is_in_the_log_the_usage_record_and_the_export(server):
    with server.client() as client:
        answer = client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "trace-xyz-1"})
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True},
                           headers={"x-request-id": "trace-xyz-2"}) as streamed:
            assert streamed.headers["x-request-id"] == "trace-xyz-2"
            lines = [line for line in streamed.iter_lines() if line.startswith("data: {")]
    assert answer.status_code == 200 and lines
    rows = {r.request_id: r for r in usage_rows(sqlite_url(server)) if r.request_id in ("trace-xyz-1", "trace-xyz-2")}
    assert rows["trace-xyz-1"].id == answer.json()["id"] and rows["trace-xyz-2"].status == 200
    deadline = time.monotonic() + 5
    while "[trace-xyz-1]" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in server.log().splitlines() if "[trace-xyz-1]" in x and "alize.access" in x)
    assert "POST /v1/chat/completions 200" in line and "model=mistral-tiny" in line and "key='tests'" in line
    assert server.key not in server.log()  # the secret, never
    with server.client(server.admin_key) as admin:
        export = admin.get("/admin/v1/usage", params={"group_by": "request", "limit": 50}).json()
        as_csv = admin.get("/admin/v1/usage", params={"group_by": "request", "format": "csv"})
        one = admin.get("/admin/v1/usage", params={"group_by": "request", "limit": 1}).json()
        assert admin.get("/admin/v1/usage", params={"group_by": "request", "limit": 0}).status_code == 400
    mine = next(r for r in export["data"] if r["request_id"] == "trace-xyz-1")
    assert mine["id"] == answer.json()["id"] and mine["key"] == "tests" and mine["model"] == "mistral-tiny"
    assert mine["completion_tokens"] == answer.json()["usage"]["completion_tokens"] and mine["status"] == 200
    assert mine["cost_eur"] > 0 and mine["latency_ms"] >= 0 and mine["backend"] == "smollm2-135m-instruct"
    assert len(one["data"]) == 1 and one["has_more"] is True
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert any(r["request_id"] == "trace-xyz-2" and r["key"] == "tests" for r in table)


def test_json_log_lines_carry_the_request_and_its_fields(tmp_path):
    from tests.server import start_server

    gw = start_server(tmp_path / "data", env={"ALIZE_LOG_FORMAT": "json"})
    try:
        with gw.client() as client:
            assert client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "json-1"}).status_code == 200
        deadline = time.monotonic() + 5
        while '"json-1"' not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        gw.stop()
    records = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    assert any(r["logger"] == "alize.services.models" for r in records)  # not only access lines
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's own lines too
    access = next(r for r in records if r["request_id"] == "json-1")
    assert access["logger"] == "alize.access" and access["status"] == 200 and access["key"] == "tests"
    assert access["model"] == "mistral-tiny" and access["completion_tokens"] == 2 and access["total_ms"] >= 0
    assert gw.key not in gw.log()
