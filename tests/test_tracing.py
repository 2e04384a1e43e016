"""Traces reach an OTLP collector (an in-process HTTP one, decoding OpenTelemetry's own
protobuf messages) from a real server started with OTEL_EXPORTER_OTLP_ENDPOINT: one span
per request under the client's traceparent, the GenAI attributes, children for admission,
queue, prefill and decode, and for the call to an upstream engine."""

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.server import Server, start_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Collector(BaseHTTPRequestHandler):
    spans: list = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                Collector.spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def traced(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    folder = tmp_path_factory.mktemp("traced")
    config = folder / "models.toml"
    config.write_text(f"""
[backends.remote]
kind = "upstream"
url = "{server.v1}"
model = "mistral-tiny"
api_key_env = "REMOTE_KEY"
context_length = 8192
[[models]]
id = "remote-tiny"
backend = "remote"
""")
    srv = start_server(folder / "data", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100", "ALIZE_CONFIG_FILE": str(config), "REMOTE_KEY": server.key})
    yield srv
    srv.stop()
    collector.shutdown()


def _attributes(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = (value.string_value or value.int_value or value.double_value
                       if value.WhichOneof("value") != "bool_value" else value.bool_value)
    return out


def _trace(request_id: str, timeout: float = 15) -> tuple[object, list]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roots = [s for s in Collector.spans if _attributes(s).get("alize.request_id") == request_id]
        if roots:
            children = [s for s in Collector.spans if s.parent_span_id == roots[0].span_id]
            return roots[0], children
        time.sleep(0.1)
    raise AssertionError(f"no span for {request_id} reached the collector")


def test_a_local_request_is_traced_with_genai_attributes_and_engine_stages(traced: Server):
    r = httpx.post(traced.url + "/v1/chat/completions", timeout=60, headers={
        "Authorization": f"Bearer {traced.key}", "traceparent": TRACEPARENT, "x-request-id": "traced-local"},
        json={"model": "mistral-small-latest", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    usage = r.json()["usage"]
    root, children = _trace("traced-local")
    attributes = _attributes(root)
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == "00f067aa0ba902b7"
    assert root.name == "chat mistral-small-latest"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "mistral-small-latest"
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["http.response.status_code"] == 200
    stages = {s.name: s for s in children}
    assert {"admission", "queue", "prefill", "decode"} <= set(stages)
    assert stages["prefill"].end_time_unix_nano <= stages["decode"].start_time_unix_nano + 1000
    assert all(root.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano
               <= root.end_time_unix_nano for s in children)


def test_an_upstream_call_is_a_child_span(traced: Server):
    r = httpx.post(traced.url + "/v1/chat/completions", timeout=60, headers={
        "Authorization": f"Bearer {traced.key}", "x-request-id": "traced-upstream"},
        json={"model": "remote-tiny", "max_tokens": 3, "stream": True,
              "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    root, children = _trace("traced-upstream")
    upstream = [s for s in children if s.name == "upstream remote"]
    assert len(upstream) == 1 and _attributes(root)["gen_ai.usage.output_tokens"] == 3
    assert "admission" in {s.name for s in children}


def test_without_an_endpoint_nothing_is_traced(tmp_path: Path):
    from alize.services.tracing import Tracing

    assert Tracing.from_environment() is None  # (this process has no OTEL_EXPORTER_OTLP_ENDPOINT)
