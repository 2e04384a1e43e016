"""Bad input gets a clear 4xx in Mistral's error shape, never a 500 or a stack trace."""

import httpx
import pytest

from tests.spec import assert_valid

MODEL = "mistral-small-latest"
USER = [{"role": "user", "content": "Hi"}]


def assert_error(r: httpx.Response, status: int, type_: str | None = None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "error" and isinstance(body["message"], str) and body["message"]
    assert set(body) >= {"object", "message", "type", "param", "code"}
    assert "Traceback" not in r.text
    if type_:
        assert body["type"] == type_
    return body


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"}])
def test_unauthorized(server, headers):
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": USER},
                   headers=headers)
    assert_error(r, 401)
    for path in ("/v1/models", "/v1/models/mistral-tiny"):
        assert_error(httpx.get(server.url + path, headers=headers), 401)
    assert_error(httpx.post(server.url + "/v1/embeddings", json={"model": "mistral-embed", "input": "x"},
                            headers=headers), 401)


def test_auth_comes_before_validation(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={"bogus": True})
    assert_error(r, 401)


def test_health_needs_no_auth(server):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_unknown_model(http):
    body = assert_error(http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": USER}),
                        404, "invalid_model")
    assert body["message"] == "Invalid model: gpt-9" and body["code"] == "1500"
    assert_error(http.get("/v1/models/gpt-9"), 404)
    assert_error(http.post("/v1/embeddings", json={"model": "gpt-9", "input": "x"}), 404)


def test_wrong_kind_of_model(http):
    assert_error(http.post("/v1/chat/completions", json={"model": "mistral-embed", "messages": USER}), 400)
    assert_error(http.post("/v1/embeddings", json={"model": "mistral-small-latest", "input": "x"}), 400)


def test_validation_errors_are_422_with_detail(http):
    r = http.post("/v1/chat/completions", json={"model": MODEL})
    body = assert_error(r, 422)
    assert_valid(body, "HTTPValidationError")
    assert body["detail"][0]["loc"][-1] == "messages"
    for bad in ({"temperature": -1}, {"temperature": 5}, {"max_tokens": -3}, {"top_p": 2},
                {"n": 0}, {"n": 1000}, {"presence_penalty": 9}, {"messages": []},
                {"messages": [{"role": "wizard", "content": "x"}]}, {"stop": 42},
                {"random_seed": -1}, {"max_tokens": "many"}, {"top_k": 10**12}):
        r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, **bad})
        assert_valid(assert_error(r, 422), "HTTPValidationError")


def test_context_overflow_is_400_not_truncation(http):
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, "max_tokens": 10**9})
    body = assert_error(r, 400)
    assert "context" in body["message"]
    long = "word " * 9000
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": long}],
                                                "max_tokens": 1})
    assert_error(r, 400)
    r = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": ["ok", "word " * 400]})
    assert_error(r, 400)


def test_message_order(http):
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
    body = assert_error(r, 400, "invalid_request_message_order")
    assert body["code"] == "3230"


def test_malformed_json_and_bad_utf8(http):
    assert_error(http.post("/v1/chat/completions", content=b'{"model": ',
                           headers={"content-type": "application/json"}), 400)
    assert_error(http.post("/v1/chat/completions", content=b'{"model": "\xff\xfe", "messages": []}',
                           headers={"content-type": "application/json"}), 400)
    r = http.post("/v1/chat/completions", content=b"not json", headers={"content-type": "text/plain"})
    assert 400 <= r.status_code < 500
    # NaN and Infinity are not JSON (Python's json writes them): refused, never a 500
    for body in (b'{"model": NaN}', b'{"model": "%s", "temperature": Infinity, "messages": '
                 b'[{"role": "user", "content": "x"}]}' % MODEL.encode(), b"-Infinity"):
        for path in ("/v1/chat/completions", "/v1/embeddings"):
            assert_error(http.post(path, content=body, headers={"content-type": "application/json"}), 400)


def test_body_over_limit_is_413(http):
    r = http.post("/v1/chat/completions", json={"model": MODEL,
                                                "messages": [{"role": "user", "content": "x" * (9 << 20)}]})
    assert_error(r, 413)


def test_unknown_path_and_method(http):
    assert_error(http.get("/v1/nothing-here"), 404)
    assert_error(http.get("/v1/chat/completions"), 405)


def test_unsupported_features_fail_closed(http):
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": "http://x/y.png"}]}]})
    assert_error(r, 400)
    # a chunk's type may be left out (the spec defaults it): its field names it, image or text
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [
        {"role": "user", "content": [{"image_url": "http://x/y.png"}]}]})
    assert "'image_url'" in assert_error(r, 400)["message"]
    r = http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 1, "messages": [
        {"role": "user", "content": [{"text": "Hi"}, {"type": "text", "text": " there"}]}]})
    assert r.status_code == 200, r.text
    assert "needs a 'type'" in assert_error(http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": [{}]}]}), 400)["message"]
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, "response_format": {
        "type": "json_schema", "json_schema": {"name": "n", "strict": True,
                                               "schema": {"type": "number", "multipleOf": 2}}}})
    assert "multipleOf" in assert_error(r, 400)["message"]


def test_errors_change_nothing(http):
    before = http.get("/v1/models").json()
    http.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, "max_tokens": -1})
    assert http.get("/v1/models").json() == before
    ok = http.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, "max_tokens": 2})
    assert ok.status_code == 200
