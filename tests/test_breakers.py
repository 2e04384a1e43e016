"""Inputs that once broke the server (a 500, a traceback, a hang), each kept here as a
fuzzing seed: every one must get a clear 4xx in Mistral's error shape and change nothing."""

import json
import subprocess
import sys

import pytest

from tests.databases import postgres_database
from tests.server import ROOT
from tests.test_errors import assert_error

MODEL = "mistral-small-latest"
SURROGATE = b'"x\\ud800y"'  # JSON that decodes to text no Unicode encoding can hold


def _nested(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def _raw(template: bytes) -> bytes:
    return template.replace(b"@S", SURROGATE)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", b'{"model": "%s", "messages": [{"role": "user", "content": @S}]}' % MODEL.encode()),
    ("/v1/chat/completions", b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "stop": [@S]}'
     % MODEL.encode()),
    ("/v1/fim/completions", b'{"model": "codestral-latest", "prompt": "def f(", "suffix": @S}'),
    ("/v1/completions", b'{"model": "%s", "prompt": @S}' % MODEL.encode()),
    ("/v1/embeddings", b'{"model": "mistral-embed", "input": ["ok", @S]}'),
])
def test_unpaired_surrogates_are_400(http, path, body):
    r = http.post(path, content=_raw(body), headers={"content-type": "application/json"})
    assert "surrogate" in assert_error(r, 400)["message"]


def test_a_surrogate_pair_is_text(http):
    body = b'{"model": "%s", "max_tokens": 2, "messages": [{"role": "user", "content": "\\ud83c\\udf89"}]}'
    r = http.post("/v1/chat/completions", content=body % MODEL.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("thinking", [["plain text", 3], [None], "not a list", [{"type": "thinking", "thinking": []}]])
def test_malformed_thinking_chunks_are_400(http, thinking):
    messages = [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": thinking},
                                                  {"type": "text", "text": "Hello"}]},
                {"role": "user", "content": "And?"}]
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 2})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["object"] == "error"


@pytest.mark.parametrize("path", ["/v1/files", "/v1/batch/jobs"])
def test_huge_page_numbers_are_4xx(http, path):
    for page in (10**30, 2**63, 10**7):
        assert_error(http.get(path, params={"page": page}), 422)
    assert http.get(path, params={"page": 1000}).status_code == 200


def test_schemas_nested_300_deep_are_400(http):
    tools = [{"type": "function", "function": {"name": "deep", "parameters": _nested(300)}}]
    r = http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 2, "tools": tools,
                                                "messages": [{"role": "user", "content": "Hi"}]})
    assert "nested" in assert_error(r, 400)["message"]
    r = http.post("/v1/chat/completions", json={
        "model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": _nested(300)}}})
    assert "nested" in assert_error(r, 400)["message"]


@pytest.mark.parametrize("fields", [{"expires_in_days": 1e12}, {"rpm": 1e20}, {"tpm": 3_000_000_000},
                                    {"monthly_tokens": 10**30}, {"budget_eur": 1e300}])
def test_out_of_range_limits_on_the_admin_api_are_4xx(server, fields):
    with server.client(server.admin_key) as admin:
        before = admin.get("/admin/v1/keys").json()["data"]
        r = admin.post("/admin/v1/keys", json={"name": "too-much", **fields})
        assert 400 <= r.status_code < 500 and r.json()["object"] == "error", r.text
        limits = {k: v for k, v in fields.items() if k != "expires_in_days"} or {"rpm": 2**40}
        r = admin.post("/admin/v1/workspaces", json={"name": "too-much", **limits})
        assert 400 <= r.status_code < 500 and r.json()["object"] == "error", r.text
        assert admin.get("/admin/v1/keys").json()["data"] == before


def test_out_of_range_limits_in_the_cli_on_postgresql():
    with postgres_database() as url:
        out = subprocess.run([sys.executable, "-m", "alize", "workspaces", "create", "big", "--rpm", "3000000000",
                              "--database-url", url], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode != 0
        assert "rpm" in out.stderr and "Traceback" not in out.stderr + out.stdout, out.stderr


def test_a_chunked_body_over_the_limit_is_413(http):
    def chunks():
        for _ in range(10):
            yield b'{"model": "x", "messages": [{"role": "user", "content": "' + b"y" * (1 << 20)
        yield b'"}]}'

    r = http.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413)
    assert http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 1, "messages": [
        {"role": "user", "content": "Hi"}]}).status_code == 200


def test_a_batch_line_with_a_surrogate_is_an_error_line(http):
    line = b'{"custom_id": "s", "body": {"model": "mistral-tiny", "max_tokens": 2, "messages": [' \
           b'{"role": "user", "content": @S}]}}\n'
    up = http.post("/v1/files", files={"file": ("s.jsonl", _raw(line))}, data={"purpose": "batch"})
    assert up.status_code == 200, up.text
    job = http.post("/v1/batch/jobs", json={"input_files": [up.json()["id"]], "endpoint": "/v1/chat/completions"})
    assert job.status_code == 200, job.text
    from tests.test_batch import file_lines, wait_job

    done = wait_job(http, job.json()["id"])
    assert (done["failed_requests"], done["succeeded_requests"]) == (1, 0), done
    (error,) = file_lines(http, done["error_file"])
    assert error["response"]["status_code"] == 400 and "JSON" in error["error"]["message"]
    json.dumps(error)  # the error file itself holds no unencodable text
