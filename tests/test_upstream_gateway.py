"""Alizé as a gateway: a registry of upstream backends only (no model loaded), in front of a
real upstream (the session's `alize serve`, over OpenAI's wire) and a dead replica, driven
with Mistral's official SDK: answers, streams, tool calls and JSON schemas in Mistral's
shapes; the upstream's usage billed; failover before the first byte; an upstream's 4xx in
Mistral's shape; a client that leaves cancels the upstream request."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import llama_cpp
import pytest
from mistralai.client import Mistral

from alize.protocol.chat import ChatCompletionRequest
from alize.protocol.fim import FIMCompletionRequest
from alize.registry import Registry
from alize.services.metering import Call
from alize.services.upstream_chat import Plan as ChatPlan
from alize.services.upstream_text import TextPlan
from tests.console_helpers import signed_in
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

[backends.code-openai]
kind = "upstream"
url = "{live}"
model = "codestral-latest"
api_key_env = "LIVE_UPSTREAM_KEY"
context_length = 8192

[[models]]
id = "codestral-latest"
backend = "code-openai"
capabilities = ["completion_chat", "completion_fim"]

[backends.code-mistral]
kind = "upstream"
url = "{live}"
wire = "mistral"
model = "codestral-latest"
api_key_env = "LIVE_UPSTREAM_KEY"
context_length = 8192

[[models]]
id = "codestral-over-mistral-wire"
backend = "code-mistral"
capabilities = ["completion_chat", "completion_fim"]

[backends.quiet]
kind = "upstream"
url = "{quiet}"
model = "quiet"
context_length = 8192
tokenizer = "builtin:smollm2"

[[models]]
id = "quiet-latest"
backend = "quiet"
"""

QUIET_ANSWER = "Hello there, my friend. Nice weather today!"


class Quiet(BaseHTTPRequestHandler):
    """An engine that reports no usage (as some do): Alizé counts with the model's tokenizer."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._send(b'{"object": "list", "data": []}', "application/json")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        if not body.get("stream"):
            self._send(json.dumps({"id": "q", "object": "chat.completion", "created": 0, "model": "quiet", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": QUIET_ANSWER}}]}
            ).encode(), "application/json")
            return
        words = QUIET_ANSWER.split(" ")
        events = [{"choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]} for i, w in enumerate(words)]
        events[-1]["choices"][0]["finish_reason"] = "stop"
        self._send(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n",
                   "text/event-stream")

    def _send(self, data: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def quiet() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


@pytest.fixture(scope="module")
def gateway(server: Server, quiet: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("gateway")
    config = folder / "models.toml"
    config.write_text(REGISTRY.format(dead=free_port(), live=server.v1, quiet=quiet))
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
    assert [m["id"] for m in models["data"]] == ["mistral-small-latest", "mistral-embed", "codestral-latest",
                                                 "codestral-over-mistral-wire", "quiet-latest"]
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
    assert mine.model == "mistral-small-latest" and mine.completion_tokens == 3 and mine.backend == "live"
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
    assert [m["model"] for m in listed][:2] == ["mistral-small-latest", "mistral-embed"]
    assert listed[0]["routing"] == "round-robin"
    replicas = {r["name"]: r for r in listed[0]["replicas"]}
    assert replicas["live"]["up"] and replicas["live"]["failovers"] == 0 and replicas["live"]["inflight"] == 0
    dead = replicas["dead"]
    assert dead["failovers"] >= 1 or not dead["up"]
    assert "ConnectError" in (dead["last_error"] or "") and dead["url"].endswith("/v1")
    with gateway.client() as ordinary:
        assert ordinary.get("/admin/v1/backends").status_code == 403
    console, _ = signed_in(gateway.url, gateway.admin_key)
    try:
        page = console.get("/console/models").text
        rows = console.get("/console/backends/rows").text
    finally:
        console.close()
    assert "Upstream engines" in page and 'data-replica="dead"' in rows and 'data-replica="live"' in rows
    assert "ConnectError" in rows or "EJECTED" in rows


def test_tool_calls_and_json_schema_through_the_upstream(gateway: Server):
    client = _sdk(gateway)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    # greedy: a sampled 135M model may wander inside the city string past max_tokens
    res = client.chat.complete(model="mistral-small-latest", tools=tools, tool_choice="any", max_tokens=200,
                               temperature=0, messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = res.choices[0].message.tool_calls[0]
    assert res.choices[0].finish_reason == "tool_calls" and len(call.id) == 9 and call.id.isalnum()
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    streamed = list(client.chat.stream(model="mistral-small-latest", tools=tools, tool_choice="any", temperature=0,
                                       max_tokens=200, messages=[{"role": "user", "content": "Weather in Nice?"}]))
    with_calls = [c for c in streamed if c.data.choices and c.data.choices[0].delta.tool_calls]
    # whole, in one delta, as Mistral's SDKs read them
    assert len(with_calls) == 1, (streamed[-1].data.choices, streamed[-1].data.usage)
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
    assert unsupported.status_code == 400 and "completion_fim" in unsupported.json()["message"]
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
    config.write_text(REGISTRY.format(dead=free_port(), live=f"http://127.0.0.1:{free_port()}/v1",
                                      quiet=f"http://127.0.0.1:{free_port()}/v1"))
    gw = start_server(tmp_path / "data", env={"ALIZE_CONFIG_FILE": str(config)})
    try:
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {gw.key}"}, json={
            "model": "mistral-small-latest", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 502 and r.json()["type"] == "upstream_error"
        assert "dead (" in r.json()["message"] and "live (" in r.json()["message"]
        assert not usage_rows(sqlite_url(gw), status=200)
    finally:
        gw.stop()


def test_fim_and_completions_through_the_upstream_over_both_wires(gateway: Server, server: Server):
    client = _sdk(gateway)
    code = {"prompt": "def add(a, b):\n    return ", "suffix": "\n\nprint(add(1, 2))", "max_tokens": 4,
            "temperature": 0}

    def direct(model: str) -> str:
        """The upstream's own answer to the same request, on the endpoint the wire uses (asked
        twice: an answer read from its prefix cache may differ from the first, cold one)."""
        for _ in range(2):
            if "mistral" in model:
                answer = Mistral(api_key=server.key, server_url=server.url).fim.complete(
                    model="codestral-latest", **code).choices[0].message.content
            else:
                answer = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {server.key}"},
                                    json={"model": "codestral-latest", **code}).json()["choices"][0]["text"]
        return answer

    for model in ("codestral-latest", "codestral-over-mistral-wire"):
        expected = direct(model)
        res = client.fim.complete(model=model, **code, http_headers={"x-request-id": f"gw-fim-{model}"})
        upstream = _upstream_row(server, f"gw-fim-{model}")
        assert upstream.endpoint == ("fim.completions" if "mistral" in model else "completions")
        assert res.usage.completion_tokens == upstream.completion_tokens == 4
        assert res.usage.prompt_tokens == upstream.prompt_tokens and res.choices[0].message.content == expected
        chunks = list(client.fim.stream(model=model, prompt="x = ", max_tokens=3))
        assert chunks[-1].data.choices[0].finish_reason == "length" and chunks[-1].data.usage.completion_tokens == 3
        assert sum(1 for c in chunks if c.data.usage is not None) == 1
    headers = {"Authorization": f"Bearer {gateway.key}"}
    text = httpx.post(gateway.url + "/v1/completions", headers=headers, timeout=60, json={
        "model": "codestral-latest", "prompt": ["Once upon", "The end"], "max_tokens": 3, "n": 2, "echo": True}).json()
    assert [c["index"] for c in text["choices"]] == [0, 1, 2, 3] and text["usage"]["completion_tokens"] == 12
    assert text["choices"][2]["text"].startswith("The end")
    with httpx.stream("POST", gateway.url + "/v1/completions", headers=headers, timeout=60, json={
            "model": "codestral-latest", "prompt": "Once upon", "max_tokens": 3, "stream": True,
            "stream_options": {"include_usage": True}}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert events[-1]["usage"]["completion_tokens"] == 3 and events[-1]["choices"] == []
    assert "".join(c["text"] for e in events for c in e["choices"])


def test_a_prefix_is_continued_and_written_once_over_mistrals_wire(gateway: Server, server: Server):
    """Another Alizé repeats the prefix at the start of its answer, as Mistral does; the
    gateway writes it itself, once, streamed or not, and the rest is the upstream's."""
    messages = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "My answer:",
                                                                   "prefix": True}]
    ask = {"messages": messages, "max_tokens": 6, "temperature": 0}
    for _ in range(2):  # the second from the upstream's prefix cache, like the gateway's below
        expected = Mistral(api_key=server.key, server_url=server.url).chat.complete(
            model="codestral-latest", **ask).choices[0].message.content
    assert expected.startswith("My answer:") and not expected.startswith("My answer:My answer:")
    client = _sdk(gateway)
    whole = client.chat.complete(model="codestral-over-mistral-wire", **ask).choices[0].message.content
    chunks = list(client.chat.stream(model="codestral-over-mistral-wire", **ask))
    streamed = "".join(c.data.choices[0].delta.content or "" for c in chunks if c.data.choices)
    assert whole == streamed == expected


def test_an_upstream_without_usage_is_counted_with_the_models_tokenizer(gateway: Server, server: Server):
    messages = [{"role": "user", "content": "Say hello"}]
    res = _sdk(gateway).chat.complete(model="quiet-latest", messages=messages, max_tokens=20,
                                      http_headers={"x-request-id": "gw-quiet"})
    assert res.choices[0].message.content == QUIET_ANSWER
    # the upstream runs SmolLM2 (so says the registry): the prompt counted as Alizé's own
    # engine counts it, the answer as llama-cpp-python's tokenizer does
    own = Mistral(api_key=server.key, server_url=server.url).chat.complete(
        model="smollm2-135m-instruct", messages=messages, max_tokens=1)
    assert res.usage.prompt_tokens == own.usage.prompt_tokens
    vocab = llama_cpp.Llama(str(Registry.load().resolve_path(Registry.load().get("smollm2-135m-instruct").backend)),
                            vocab_only=True, verbose=False)
    assert res.usage.completion_tokens == len(vocab.tokenize(QUIET_ANSWER.encode(), add_bos=False)) != \
        len(QUIET_ANSWER.split(" "))  # (not the number of deltas the stream will have)
    row = usage_rows(sqlite_url(gateway), request_id="gw-quiet")[0]
    assert (row.prompt_tokens, row.completion_tokens) == (res.usage.prompt_tokens, res.usage.completion_tokens)
    streamed = list(_sdk(gateway).chat.stream(model="quiet-latest", messages=messages, max_tokens=20))
    assert streamed[-1].data.usage.completion_tokens == res.usage.completion_tokens


def test_batch_lines_run_through_the_upstream(gateway: Server, server: Server):
    client = _sdk(gateway)
    lines = [{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}},
             {"custom_id": "b", "body": {"messages": [{"role": "user", "content": "Bye"}], "max_tokens": 3}}]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    uploaded = client.files.upload(file={"file_name": "in.jsonl", "content": data}, purpose="batch")
    job = client.batch.jobs.create(input_files=[uploaded.id], model="mistral-small-latest",
                                   endpoint="/v1/chat/completions")
    deadline = time.monotonic() + 120
    while job.status not in ("SUCCESS", "FAILED", "CANCELLED", "TIMEOUT_EXCEEDED") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = client.batch.jobs.get(job_id=job.id)
    assert job.status == "SUCCESS" and job.succeeded_requests == 2, job
    out = [json.loads(line) for line in client.files.download(file_id=job.output_file).read().splitlines()]
    tokens = {line["custom_id"]: line["response"]["body"]["usage"]["completion_tokens"] for line in out}
    assert tokens == {"a": 2, "b": 3}
    code = [{"custom_id": "c", "body": {"prompt": "def f(x):\n    return ", "suffix": "\n", "max_tokens": 2}}]
    code_file = client.files.upload(file={"file_name": "fim.jsonl", "content": json.dumps(code[0]).encode()},
                                    purpose="batch")
    refused = httpx.post(gateway.url + "/v1/batch/jobs", headers={"Authorization": f"Bearer {gateway.key}"}, json={
        "input_files": [code_file.id], "model": "mistral-small-latest", "endpoint": "/v1/fim/completions"})
    assert refused.status_code == 400 and "completion_fim" in refused.json()["message"]
    job = client.batch.jobs.create(input_files=[code_file.id], model="codestral-latest",
                                   endpoint="/v1/fim/completions")
    deadline = time.monotonic() + 120
    while job.status not in ("SUCCESS", "FAILED", "CANCELLED", "TIMEOUT_EXCEEDED") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = client.batch.jobs.get(job_id=job.id)
    out = json.loads(client.files.download(file_id=job.output_file).read())
    assert job.status == "SUCCESS" and out["response"]["body"]["usage"]["completion_tokens"] == 2


def test_a_replica_killed_mid_stream_ends_the_stream_with_an_error_billing_what_was_delivered(tmp_path: Path):
    upstream = start_server(tmp_path / "upstream")
    config = tmp_path / "models.toml"
    config.write_text(f"""
replace_builtin = true
[backends.doomed]
kind = "upstream"
url = "{upstream.v1}"
model = "mistral-tiny"
api_key_env = "DOOMED_KEY"
context_length = 8192
[[models]]
id = "mistral-small-latest"
backend = "doomed"
output_eur_per_1k_tokens = 0.001
""")
    gw = start_server(tmp_path / "gateway", env={"ALIZE_CONFIG_FILE": str(config), "DOOMED_KEY": upstream.key})
    try:
        deltas, last = 0, None
        with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=60, headers={
                "Authorization": f"Bearer {gw.key}", "x-request-id": "gw-killed"}, json={
                "model": "mistral-small-latest", "max_tokens": 2000, "stream": True, "logit_bias": EOS_BAN,
                "messages": [{"role": "user", "content": "Tell a very long story"}]}) as response:
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                last = json.loads(line[6:])
                deltas += bool(last["choices"] and last["choices"][0]["delta"].get("content"))
                if deltas == 10:
                    upstream.process.kill()  # kill -9
        assert last is not None and last["choices"][0]["finish_reason"] == "error"
        assert 10 <= deltas < 2000 and last["usage"]["completion_tokens"] == deltas
        row = usage_rows(sqlite_url(gw), request_id="gw-killed")[0]
        assert row.completion_tokens == deltas and row.cost_nano == deltas * 1000
        after = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {gw.key}"}, json={
            "model": "mistral-small-latest", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]})
        assert after.status_code == 502 and "doomed" in after.json()["message"]
    finally:
        gw.stop()
        upstream.stop()


def test_each_wire_gets_its_own_field_names(tmp_path: Path):
    config = tmp_path / "models.toml"
    config.write_text(REGISTRY.format(dead=1, live="http://127.0.0.1:2/v1", quiet="http://127.0.0.1:3/v1"))
    registry = Registry.load(config)
    fim = FIMCompletionRequest(model="m", prompt="a", suffix="b", random_seed=7, max_tokens=3)
    for model, seed, path in (("codestral-latest", "seed", "/completions"),
                              ("codestral-over-mistral-wire", "random_seed", "/fim/completions")):
        entry = registry.get(model)
        plan = TextPlan(entry, Call(None, "fim"), ["a"], "b", {"seed": 7}, 3, 1, fim=True)
        body = plan.body(entry.backend.name, "a", stream=True)
        assert body[seed] == 7 and plan.path(entry.backend.name) == path and body["suffix"] == "b"
        assert ("stream_options" in body) == (seed == "seed")
        chat = ChatPlan(entry, Call(None, "chat"), ChatCompletionRequest(
            model="m", random_seed=7, safe_prompt=True, tool_choice="any", tools=[{"type": "function", "function": {
                "name": "f", "parameters": {"type": "object"}}}],
            messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well", "prefix": True}]),
            None, None, prefix="Well")
        body = chat.body(entry.backend.name, stream=False)
        if seed == "seed":  # OpenAI's wire, as vLLM takes it
            assert body["tool_choice"] == "required" and body["continue_final_message"]
            assert body["messages"][0]["role"] == "system" and "prefix" not in body["messages"][-1]
        else:  # Mistral's, unchanged
            assert body["tool_choice"] == "any" and body["safe_prompt"] and body["messages"][-1]["prefix"]
        assert body[seed] == 7
    assert fim.random_seed == 7
