"""Alizé as a gateway: a registry of upstream backends only (no model loaded), in front of a
real upstream (the session's `alize serve`, over OpenAI's wire) and a dead replica, driven
with Mistral's official SDK: answers, streams, tool calls and JSON schemas in Mistral's
shapes; the upstream's usage billed; failover before the first byte; an upstream's 4xx in
Mistral's shape; a client that leaves cancels the upstream request."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mistralai.client import Mistral

from tests.platform_helpers import EOS_BAN, sqlite_url, usage_rows
from tests.server import Server, free_port, start_server

REGISTRY = """
replace_builtin = true

[backends.dead]
kind = "upstream"
url = "http://127.0.0.1:{dead}/v1"
model = "mistral-tiny"
context_length = 8192

[backends.live]
kind = "upstream"
url = "{live}"
model = "mistral-tiny"
api_key_env = "LIVE_UPSTREAM_KEY"
context_length = 8192

[[models]]
id = "mistral-small-latest"
aliases = ["mistral-small-*"]
backends = ["dead", "live"]
routing = "round-robin"
input_eur_per_1k_tokens = 0.0001
output_eur_per_1k_tokens = 0.0003

[backends.live-embed]
kind = "upstream"
url = "{live}"
model = "mistral-embed"
api_key_env = "LIVE_UPSTREAM_KEY"
context_length = 256

[[models]]
id = "mistral-embed"
backend = "live-embed"
capabilities = []
input_eur_per_1k_tokens = 0.0001
"""


@pytest.fixture(scope="module")
def gateway(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("gateway")
    config = folder / "models.toml"
    config.write_text(REGISTRY.format(dead=free_port(), live=server.v1))
    started = time.monotonic()
    gw = start_server(folder / "data", env={"ALIZE_CONFIG_FILE": str(config), "LIVE_UPSTREAM_KEY": server.key})
    gw.startup_s = time.monotonic() - started  # type: ignore[attr-defined]
    yield gw
    gw.stop()


def _sdk(gw: Server) -> Mistral:
    return Mistral(api_key=gw.key, server_url=gw.url)


def _upstream_row(server: Server, request_id: str) -> object:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = usage_rows(sqlite_url(server), request_id=request_id)
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"the upstream recorded no request {request_id}")


def test_a_gateway_starts_without_loading_a_model(gateway: Server):
    log = gateway.log()
    assert "loaded " not in log and "upstream dead=" in log
    models = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {gateway.key}"}).json()
    assert [m["id"] for m in models["data"]] == ["mistral-small-latest", "mistral-embed"]
    assert "Served upstream by dead" in models["data"][0]["description"]


def test_answers_and_streams_in_mistrals_shapes_billed_from_the_upstream(gateway: Server, server: Server):
    client = _sdk(gateway)
    for i in range(4):  # round-robin: every other request meets the dead replica first, and moves on
        res = client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}],
                                   max_tokens=3, http_headers={"x-request-id": f"gw-{i}"})
        assert res.choices[0].message.content is not None and res.usage.completion_tokens == 3
        upstream = _upstream_row(server, f"gw-{i}")
        assert (upstream.prompt_tokens, upstream.completion_tokens) == (res.usage.prompt_tokens, 3)
    mine = usage_rows(sqlite_url(gateway), request_id="gw-0")[0]
    assert mine.model == "mistral-small-latest" and mine.completion_tokens == 3
    assert mine.cost_nano == mine.prompt_tokens * 100 + 3 * 300  # the gateway's own prices
    chunks = list(client.chat.stream(model="mistral-small-latest", max_tokens=5,
                                     messages=[{"role": "user", "content": "Count"}]))
    text = "".join(c.data.choices[0].delta.content or "" for c in chunks if c.data.choices)
    assert text and chunks[-1].data.choices[0].finish_reason == "length"
    assert chunks[-1].data.usage.completion_tokens == 5
    assert sum(1 for c in chunks if c.data.usage is not None) == 1


def test_admins_see_each_replicas_health_and_failovers(gateway: Server):
    client = _sdk(gateway)
    for _ in range(2):
        client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    with gateway.client(gateway.admin_key) as admin:
        listed = admin.get("/admin/v1/backends").json()["data"]
    assert [m["model"] for m in listed] == ["mistral-small-latest", "mistral-embed"]
    assert listed[0]["routing"] == "round-robin"
    replicas = {r["name"]: r for r in listed[0]["replicas"]}
    assert replicas["live"]["up"] and replicas["live"]["failovers"] == 0 and replicas["live"]["inflight"] == 0
    dead = replicas["dead"]
    assert dead["failovers"] >= 1 or not dead["up"]
    assert "ConnectError" in (dead["last_error"] or "") and dead["url"].endswith("/v1")
    with gateway.client() as ordinary:
        assert ordinary.get("/admin/v1/backends").status_code == 403


def test_tool_calls_and_json_schema_through_the_upstream(gateway: Server):
    client = _sdk(gateway)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    res = client.chat.complete(model="mistral-small-latest", tools=tools, tool_choice="any", max_tokens=60,
                               messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = res.choices[0].message.tool_calls[0]
    assert res.choices[0].finish_reason == "tool_calls" and len(call.id) == 9 and call.id.isalnum()
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    streamed = list(client.chat.stream(model="mistral-small-latest", tools=tools, tool_choice="any",
                                       max_tokens=60, messages=[{"role": "user", "content": "Weather in Nice?"}]))
    with_calls = [c for c in streamed if c.data.choices and c.data.choices[0].delta.tool_calls]
    assert len(with_calls) == 1  # whole, in one delta, as Mistral's SDKs read them
    schema = {"type": "object", "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["answer"], "additionalProperties": False}
    res = client.chat.complete(model="mistral-small-latest", max_tokens=40,
                               messages=[{"role": "user", "content": "Pick a digit."}],
                               response_format={"type": "json_schema",
                                                "json_schema": {"name": "digit", "schema": schema, "strict": True}})
    assert 0 <= json.loads(res.choices[0].message.content)["answer"] <= 9


def test_embeddings_through_the_upstream_are_the_upstreams(gateway: Server, server: Server):
    texts = ["Bonjour", "Le chat dort sur le canapé."]
    through = _sdk(gateway).embeddings.create(model="mistral-embed", inputs=texts)
    direct = Mistral(api_key=server.key, server_url=server.url).embeddings.create(model="mistral-embed", inputs=texts)
    assert [d.embedding for d in through.data] == [d.embedding for d in direct.data]
    assert through.usage.prompt_tokens == direct.usage.prompt_tokens and through.model == "mistral-embed"
    cut = _sdk(gateway).embeddings.create(model="mistral-embed", inputs=texts, output_dimension=64)
    assert len(cut.data[0].embedding) == 64


def test_errors_come_back_in_mistrals_shape(gateway: Server):
    headers = {"Authorization": f"Bearer {gateway.key}"}
    too_long = httpx.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=60, json={
        "model": "mistral-small-latest", "max_tokens": 9000, "messages": [{"role": "user", "content": "Hi"}]})
    body = too_long.json()
    assert too_long.status_code == 400 and body["object"] == "error" and "8192" in body["message"], body
    unsupported = httpx.post(gateway.url + "/v1/fim/completions", headers=headers, json={
        "model": "mistral-small-latest", "prompt": "def f(", "max_tokens": 3})
    assert unsupported.status_code == 400 and "upstream" in unsupported.json()["message"]
    bad_schema = httpx.post(gateway.url + "/v1/chat/completions", headers=headers, json={
        "model": "mistral-small-latest", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": {
            "type": "array", "items": {"type": "integer"}, "uniqueItems": True}}}})
    assert bad_schema.status_code == 400 and "uniqueItems" in bad_schema.json()["message"]  # refused up front


def test_a_client_that_leaves_cancels_the_upstream_request(gateway: Server, server: Server):
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.key}",
                                                     "x-request-id": "gw-leaves"}, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "mistral-small-latest", "max_tokens": 500, "stream": True, "logit_bias": EOS_BAN,
                "messages": [{"role": "user", "content": "Tell a long story"}]}) as response:
            for i, _ in enumerate(response.iter_lines()):
                if i == 6:
                    break
    upstream = _upstream_row(server, "gw-leaves")
    assert upstream.status == 499 and upstream.completion_tokens < 500


def test_every_replica_down_is_a_502_naming_them(tmp_path: Path):
    config = tmp_path / "models.toml"
    config.write_text(REGISTRY.format(dead=free_port(), live=f"http://127.0.0.1:{free_port()}/v1"))
    gw = start_server(tmp_path / "data", env={"ALIZE_CONFIG_FILE": str(config)})
    try:
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {gw.key}"}, json={
            "model": "mistral-small-latest", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 502 and r.json()["type"] == "upstream_error"
        assert "dead (" in r.json()["message"] and "live (" in r.json()["message"]
        assert not usage_rows(sqlite_url(gw), status=200)
    finally:
        gw.stop()
