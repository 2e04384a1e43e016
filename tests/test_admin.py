"""The admin API and CLI: workspaces, keys (models, expiry, rotation, revocation), usage."""

import csv
import io
import json
import time
from datetime import UTC, datetime

import httpx

from tests.platform_helpers import EOS_BAN, create_key, sqlite_url, usage_rows
from tests.server import alize

CHAT = {"model": "mistral-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
        "logit_bias": EOS_BAN}


def _is_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["object"] == "error" and isinstance(body["message"], str) and body["type"]
    return body


def test_admin_api_needs_an_admin_key(server):
    _is_error(httpx.get(server.url + "/admin/v1/keys"), 401)
    with server.client() as client:  # an ordinary key
        _is_error(client.get("/admin/v1/keys"), 403)
    with server.client(server.admin_key) as admin:
        listed = admin.get("/admin/v1/keys").json()["data"]
    assert {k["name"] for k in listed} >= {"tests", "tests-admin"}
    assert all("secret" not in k and k["prefix"].startswith("alz-") for k in listed)


def test_workspace_limits_and_bad_input(server):
    with server.client(server.admin_key) as admin:
        ws = admin.post("/admin/v1/workspaces", json={"name": "team-x", "rpm": 2})
        assert ws.status_code == 201 and ws.json()["limits"]["rpm"] == 2
        _is_error(admin.post("/admin/v1/workspaces", json={"name": "team-x"}), 409)
        _is_error(admin.post("/admin/v1/workspaces", json={"name": "y", "rpm": -1}), 422)
        _is_error(admin.post("/admin/v1/keys", json={"name": "k", "workspace": "nope"}), 404)
        _is_error(admin.post("/admin/v1/keys/nope/revoke"), 404)
        key = admin.post("/admin/v1/keys", json={"name": "k", "workspace": "team-x"}).json()
    with server.client(key["secret"]) as client:
        assert [client.post("/v1/chat/completions", json=CHAT).status_code for _ in range(3)] == [200, 200, 429]
        over = client.post("/v1/chat/completions", json=CHAT)
    assert "workspace 'team-x'" in _is_error(over, 429)["message"]
    with server.client(server.admin_key) as admin:
        lifted = admin.patch("/admin/v1/workspaces/team-x/limits", json={"rpm": None})
    assert lifted.json()["limits"]["rpm"] is None
    with server.client(key["secret"]) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_key_models_and_expiry(server):
    key = create_key(server, models=["mistral-tiny"], expires_in_days=8 / 86400)
    with server.client(key["secret"]) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["mistral-tiny"]
        assert client.get("/v1/models/mistral-tiny").status_code == 200
        _is_error(client.get("/v1/models/mistral-large-latest"), 404)
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        denied = client.post("/v1/chat/completions", json={**CHAT, "model": "mistral-large-latest"})
        assert "may not use the model" in _is_error(denied, 403)["message"]
        time.sleep(8.2)
        assert "expired" in _is_error(client.post("/v1/chat/completions", json=CHAT), 401)["message"]


def test_rotation_keeps_the_old_secret_for_the_grace_period(server):
    key = create_key(server)
    with server.client(server.admin_key) as admin:
        rotated = admin.post(f"/admin/v1/keys/{key['id']}/rotate", json={"grace_seconds": 600}).json()
    assert rotated["id"] == key["id"] and rotated["secret"] != key["secret"]
    for secret in (key["secret"], rotated["secret"]):
        with server.client(secret) as client:
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    # the CLI works on the same store while the server runs; no grace: the old secret stops at once
    newest = alize("keys", "rotate", key["id"], "--grace", "0", "--data-dir", str(server.data_dir)).stdout.strip()
    for secret, status in ((key["secret"], 401), (rotated["secret"], 401), (newest, 200)):
        with server.client(secret) as client:
            assert client.post("/v1/chat/completions", json=CHAT).status_code == status
    rows = usage_rows(sqlite_url(server), key_id=key["id"])
    assert sum(r.status == 200 for r in rows) == 3  # one key id throughout: usage stays together


def test_usage_report_json_csv_and_cli(server):
    key = create_key(server)
    with server.client(key["secret"]) as client:
        for _ in range(3):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert client.post("/v1/embeddings", json={"model": "mistral-embed", "input": ["a b c"]}).status_code == 200
        _is_error(client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10**6}), 400)
    rows = usage_rows(sqlite_url(server), key_id=key["id"])
    assert len(rows) == 5 and sorted(r.status for r in rows) == [200, 200, 200, 200, 400]
    today = datetime.now(UTC).date().isoformat()
    with server.client(server.admin_key) as admin:
        report = admin.get("/admin/v1/usage", params={"group_by": "key", "start": today, "end": today}).json()
        exported = admin.get("/admin/v1/usage", params={"group_by": "model", "format": "csv"})
        _is_error(admin.get("/admin/v1/usage", params={"start": "yesterday"}), 400)
        _is_error(admin.get("/admin/v1/usage", params={"group_by": "colour"}), 422)
    mine = next(r for r in report["data"] if r["group"] == key["id"])
    assert mine["name"] == key["name"]  # reports read by name
    assert mine["requests"] == 5 and mine["errors"] == 1
    assert mine["prompt_tokens"] == sum(r.prompt_tokens for r in rows)
    assert mine["completion_tokens"] == 6
    expected_eur = sum(r.cost_nano for r in rows) / 1e9
    assert abs(mine["cost_eur"] - expected_eur) < 1e-9 and expected_eur > 0
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert {"mistral-tiny", "mistral-embed"} <= {row["model"] for row in table}
    printed = alize("usage", "--group-by", "key", "--data-dir", str(server.data_dir), "--csv").stdout
    cli_row = next(r for r in csv.DictReader(io.StringIO(printed)) if r["key"] == key["id"])
    assert int(cli_row["requests"]) == 5 and int(cli_row["completion_tokens"]) == 6 and cli_row["name"] == key["name"]
    lines = alize("usage", "--group-by", "key", "--data-dir", str(server.data_dir), "--json").stdout.splitlines()
    as_json = next(row for row in map(json.loads, lines) if row["key"] == key["id"])
    assert as_json["name"] == key["name"] and as_json["requests"] == 5
    shown = alize("keys", "list", "--data-dir", str(server.data_dir)).stdout
    assert key["prefix"] in shown and key["secret"] not in shown


def test_cancelled_stream_records_the_tokens_generated(server):
    key = create_key(server)
    body = {**CHAT, "stream": True, "max_tokens": 500, "min_tokens": 500}
    chunk_id = None
    with server.client(key["secret"]) as client, client.stream("POST", "/v1/chat/completions", json=body) as r:
        received = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                received += 1
                chunk_id = chunk_id or line.split('"id":"', 1)[1].split('"', 1)[0]
                if received == 6:
                    break
    deadline = time.monotonic() + 20
    while not usage_rows(sqlite_url(server), id=chunk_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    (row,) = usage_rows(sqlite_url(server), id=chunk_id)
    assert row.status == 499 and 5 <= row.completion_tokens < 500 and row.cost_nano > 0


def test_monthly_token_quota_and_secrets_never_logged(server):
    key = create_key(server, monthly_tokens=60)
    body = {**CHAT, "max_tokens": 4}
    with server.client(key["secret"]) as client:
        first = client.post("/v1/chat/completions", json=body)
        assert first.status_code == 200
        used = first.json()["usage"]["total_tokens"]
        assert first.headers["x-ratelimit-limit-tokens-month"] == "60"
        statuses = [client.post("/v1/chat/completions", json=body).status_code for _ in range(60 // used + 1)]
    assert statuses[-1] == 429
    rows = usage_rows(sqlite_url(server), key_id=key["id"], status=200)
    assert sum(r.prompt_tokens + r.completion_tokens for r in rows) <= 60
    with server.client(key["secret"]) as client:
        refused = client.post("/v1/chat/completions", json=body)
    assert "Monthly token quota" in _is_error(refused, 429)["message"]
    assert key["secret"] not in server.log() and server.key not in server.log()
