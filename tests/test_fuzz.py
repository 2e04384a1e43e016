"""Property-based fuzzing of request bodies: schemathesis draws bodies from the official
spec's request schemas (and hypothesis draws arbitrary JSON); the server must never answer
5xx, and every answer must conform to the spec or be a Mistral-shaped error."""

import base64
import json

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.platform_helpers import create_key
from tests.spec import assert_valid, spec
from tests.sse import read_events

MAX_TOKENS = 3  # keeps every generation short; bigger values are tested elsewhere
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
OPERATIONS = {
    "/v1/chat/completions": "ChatCompletionResponse",
    "/v1/fim/completions": "FIMCompletionResponse",
    "/v1/embeddings": "EmbeddingResponse",
    "/v1/agents": "Agent",
    "/v1/libraries": "Library",
}
CHAT_MODELS = ["mistral-small-latest", "codestral-latest", "mistral-tiny"]


def _schema():
    return schemathesis.openapi.from_dict(spec())


def _infer_role(message: dict) -> str:
    if "tool_call_id" in message:
        return "tool"
    if "prefix" in message or "tool_calls" in message:
        return "assistant"
    return "user"


def _repair_messages(messages: list) -> list:
    """The spec lets `role` default and `messages` be empty; the API still needs to know
    who speaks and to end on a user turn. Repair just that, keep everything else drawn."""
    repaired = [{**m, "role": m.get("role") or _infer_role(m)} for m in messages if isinstance(m, dict)]
    for m in repaired[:-1]:
        if m["role"] == "assistant":
            m["prefix"] = False
    last = repaired[-1] if repaired else None
    if last is None or not (last["role"] in ("user", "tool") or last.get("prefix") is True):
        repaired.append({"role": "user", "content": "Hello"})
    return repaired


def _bounded(path: str, body: dict) -> dict:
    body = dict(body)
    if isinstance(body.get("messages"), list):
        body["messages"] = _repair_messages(body["messages"])
    if path == "/v1/embeddings":
        body["model"] = "mistral-embed"
    elif path == "/v1/libraries":
        return body
    elif path == "/v1/agents":
        body["model"] = CHAT_MODELS[len(json.dumps(body)) % len(CHAT_MODELS)]
    elif path == "/v1/fim/completions":
        body["model"] = "codestral-latest"
        body = _bounded_generation(body)
    else:
        body["model"] = CHAT_MODELS[len(json.dumps(body)) % len(CHAT_MODELS)]
        body = _bounded_generation(body)
    return body


def _bounded_generation(body: dict) -> dict:
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] > MAX_TOKENS:
        body["max_tokens"] = MAX_TOKENS
    if isinstance(body.get("n"), int) and body["n"] > 2:
        body["n"] = 2
    return body


def decode_base64_embeddings(body: dict) -> dict:
    # The spec types `embedding` as a number array although it offers base64 encoding;
    # a base64 vector must decode to little-endian float32, then validate as numbers.
    for item in body.get("data", []):
        if isinstance(item.get("embedding"), str):
            raw = base64.b64decode(item["embedding"], validate=True)
            item["embedding"] = np.frombuffer(raw, dtype="<f4").tolist()
    return body


def check_response(r: httpx.Response, path: str, stream: bool) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    if r.status_code >= 400:
        body = r.json()
        assert body["object"] == "error" and body["message"], body
        return
    if stream:
        chunks, is_done = read_events(r)
        assert is_done
        for chunk in chunks:
            assert_valid(chunk, "CompletionChunk")
    else:
        assert_valid(decode_base64_embeddings(r.json()), OPERATIONS[path])


@pytest.mark.parametrize("path", list(OPERATIONS))
def test_spec_bodies_never_break_the_server(server, path):
    strategy = _schema()[path]["POST"].as_strategy()
    client = server.client()
    statuses: list[int] = []

    @SETTINGS
    @given(case=strategy)
    def run(case):
        body = _bounded(path, case.body if isinstance(case.body, dict) else {})
        stream = body.get("stream") is True
        with client.stream("POST", path, json=body) as r:
            if not stream or r.status_code != 200:
                r.read()
            statuses.append(r.status_code)
            check_response(r, path, stream)

    run()
    client.close()
    # The fuzz must exercise generation, not only validation errors. (The bodies drawn, though
    # derandomized, shift with what the test process imported before: 20-40% reach the model.)
    assert sum(200 <= s < 300 for s in statuses) >= len(statuses) // 5, str(sorted(statuses))


# Any text, unpaired UTF-16 surrogates included (they once reached the tokenizer as a 500).
TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["model", "messages", "max_tokens", "temperature", "top_p", "stop", "n",
                          "random_seed", "stream", "prompt", "suffix", "input", "encoding_format",
                          "presence_penalty", "logit_bias", "response_format", "tools", "safe_prompt"])


@SETTINGS
@given(path=st.sampled_from(list(OPERATIONS)), body=st.dictionaries(FIELDS, JSON, max_size=6) | JSON)
def test_arbitrary_json_never_breaks_the_server(server, path, body):
    if isinstance(body, dict) and isinstance(body.get("max_tokens"), int):
        body["max_tokens"] = min(max(body["max_tokens"], -5), MAX_TOKENS)
    if isinstance(body, dict):
        body.setdefault("max_tokens", MAX_TOKENS)
        body["stream"] = False
    # Python's json writes NaN and Infinity, as some clients do: the server must refuse them cleanly.
    with server.client() as client:
        r = client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["object"] == "error"


# Every other operation of the spec, with its path and query parameters drawn from the spec:
# the ids in the path are, three times in four, real ones of the caller's own (so the drawn
# query and body reach the code behind the lookup). Operations that generate text have their
# bodies fuzzed above; deletes would remove the real ids.
GENERATING = {"/v1/chat/completions", "/v1/fim/completions", "/v1/embeddings", "/v1/moderations",
              "/v1/chat/moderations", "/v1/classifications", "/v1/chat/classifications", "/v1/agents/completions",
              "/v1/conversations", "/v1/conversations/{conversation_id}", "/v1/conversations/{conversation_id}/restart"}


@pytest.fixture(scope="module")
def own_ids(server) -> dict[str, object]:
    """A workspace of the fuzz's own, with one of everything a path can name."""
    with server.client(server.admin_key) as admin:
        admin.post("/admin/v1/workspaces", json={"name": "fuzz-params"})
    key = create_key(server, workspace="fuzz-params")["secret"]
    with server.client(key) as http:
        agent = http.post("/v1/agents", json={"model": "mistral-small-latest", "name": "fuzz",
                                              "completion_args": {"max_tokens": MAX_TOKENS}}).json()["id"]
        conversation = http.post("/v1/conversations", json={"agent_id": agent, "inputs": "Hi"}).json()
        library = http.post("/v1/libraries", json={"name": "fuzz"}).json()["id"]
        document = http.post(f"/v1/libraries/{library}/documents",
                             files={"file": ("a.txt", b"Some text to search.")}).json()["id"]
        lines = json.dumps({"custom_id": "0", "body": {"messages": [{"role": "user", "content": "Hi"}],
                                                       "max_tokens": MAX_TOKENS}}).encode() + b"\n"
        file_id = http.post("/v1/files", files={"file": ("a.jsonl", lines)}, data={"purpose": "batch"}).json()["id"]
        job = http.post("/v1/batch/jobs", json={"input_files": [file_id], "endpoint": "/v1/chat/completions",
                                                "model": "mistral-small-latest"}).json()["id"]
    return {"key": key, "agent_id": agent, "conversation_id": conversation["conversation_id"], "library_id": library,
            "document_id": document, "file_id": file_id, "job_id": job, "model_id": "mistral-small-latest",
            "version": 0, "entry_id": conversation["outputs"][0]["id"]}


def _parameter_operations() -> list[tuple[str, str]]:
    out = []
    for result in _schema().get_all_operations():
        op = result.ok()
        if "#" in op.path or op.path in GENERATING or op.method.upper() == "DELETE":
            continue
        if "multipart/form-data" in json.dumps(op.definition.raw.get("requestBody", {})):
            continue
        out.append((op.method.upper(), op.path))
    return out


@pytest.mark.parametrize(("method", "path"), _parameter_operations())
def test_spec_parameters_never_break_the_server(server, own_ids, method, path):
    strategy = _schema()[path][method].as_strategy()
    client = server.client(str(own_ids["key"]))
    drawn = iter(range(1_000_000))

    @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        if next(drawn) % 4 and case.path_parameters:
            case.path_parameters = {k: own_ids.get(k, v) for k, v in case.path_parameters.items()}
        body = case.body if isinstance(case.body, (dict, list, str, int, float, bool)) else None
        r = client.request(method, case.formatted_path, params=case.query,
                           json=body if method != "GET" else None)
        assert r.status_code < 500, f"{method} {case.formatted_path} {case.query} {body}: {r.text[:300]}"
        if r.status_code >= 400:
            assert r.json()["object"] == "error", r.text

    run()
    client.close()


# Cases these found, kept: numbers past a column's range, and digits that are not ASCII.
HUGE = "99999999999999999999999"


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("GET", "/v1/agents/{agent_id}", {"params": {"agent_version": HUGE}}, 404),
    ("GET", "/v1/agents/{agent_id}/versions/" + HUGE, {}, 404),
    ("GET", "/v1/agents/{agent_id}/versions/²", {}, 404),
    ("PATCH", "/v1/agents/{agent_id}/version", {"params": {"version": HUGE}}, 404),
    ("PUT", "/v1/agents/{agent_id}/aliases", {"params": {"alias": "a", "version": HUGE}}, 404),
    ("POST", "/v1/conversations", {"json": {"agent_id": "{agent_id}", "agent_version": int(HUGE), "inputs": "Hi"}}, 404),
    ("POST", "/v1/conversations", {"json": {"agent_id": "{agent_id}", "agent_version": HUGE, "inputs": "Hi"}}, 404),
    ("GET", "/v1/libraries", {"params": {"page_token": base64.urlsafe_b64encode(f"offset:{HUGE}".encode()).decode()}},
     400),
])
def test_kept_parameter_cases_are_4xx(server, own_ids, method, path, kwargs, status):
    kwargs = json.loads(json.dumps(kwargs).replace("{agent_id}", str(own_ids["agent_id"])))
    with server.client(str(own_ids["key"])) as http:
        r = http.request(method, path.replace("{agent_id}", str(own_ids["agent_id"])), **kwargs)
    assert r.status_code == status and r.json()["object"] == "error", r.text


# The other operations that generate or classify, their bodies drawn from the spec as above: the
# ids they name are the fuzz workspace's own, the model one that serves the operation, and every
# generation kept to MAX_TOKENS.
OTHER_BODIES = {
    "/v1/moderations": "ModerationResponse",
    "/v1/chat/moderations": "ModerationResponse",
    "/v1/classifications": "ClassificationResponse",
    "/v1/chat/classifications": "ClassificationResponse",
    "/v1/agents/completions": "ChatCompletionResponse",
    "/v1/conversations": "ConversationResponse",
    "/v1/conversations/{conversation_id}": "ConversationResponse",
    "/v1/conversations/{conversation_id}/restart": "ConversationResponse",
    "/v1/batch/jobs": "BatchJob",
}


def _own_body(path: str, body: dict, ids: dict[str, object]) -> dict:
    body = dict(body)
    if "moderations" in path or "classifications" in path:
        body["model"] = "mistral-moderation-latest"
    elif path == "/v1/batch/jobs":
        body.update(input_files=[ids["file_id"]], model="mistral-small-latest")
    elif path == "/v1/agents/completions":
        body = _bounded_generation({**body, "agent_id": ids["agent_id"]})
        if isinstance(body.get("messages"), list):
            body["messages"] = _repair_messages(body["messages"])
    else:  # conversations: a new one runs the agent or a chat model; every answer kept short
        if path == "/v1/conversations" and "agent_id" in body:
            body["agent_id"] = ids["agent_id"]
            body.pop("agent_version", None)
        if path == "/v1/conversations" and ("model" in body or "agent_id" not in body):
            body["model"] = CHAT_MODELS[len(json.dumps(body)) % len(CHAT_MODELS)]
        if path.endswith("/restart") and len(json.dumps(body)) % 4:  # mostly from a real entry
            body["from_entry_id"] = ids["entry_id"]
        args = body.get("completion_args")
        body["completion_args"] = _bounded_generation(args if isinstance(args, dict) else {})
    return body


@pytest.mark.parametrize("path", list(OTHER_BODIES))
def test_spec_bodies_of_other_operations_never_break_the_server(server, own_ids, path):
    strategy = _schema()[path]["POST"].as_strategy()
    client = server.client(str(own_ids["key"]))
    statuses: list[int] = []

    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        body = _own_body(path, case.body if isinstance(case.body, dict) else {}, own_ids)
        url = path.replace("{conversation_id}", str(own_ids["conversation_id"]))
        r = client.post(url, json=body)
        statuses.append(r.status_code)
        assert r.status_code < 500, f"{url} {json.dumps(body)[:400]}: {r.text[:400]}"
        if r.status_code >= 400:
            assert r.json()["object"] == "error", r.text
        elif "text/event-stream" not in r.headers.get("content-type", ""):
            assert_valid(r.json(), OTHER_BODIES[path])

    run()
    client.close()
    assert statuses, path
