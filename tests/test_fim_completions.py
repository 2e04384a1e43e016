"""/v1/fim/completions and /v1/completions over raw HTTP."""

from tests.spec import assert_valid
from tests.sse import stream_chat


def test_fim_conforms(http):
    r = http.post("/v1/fim/completions", json={"model": "codestral-latest", "prompt": "def f(x):\n",
                                               "suffix": "    return y\n", "max_tokens": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_valid(body, "FIMCompletionResponse")
    assert body["usage"]["completion_tokens"] <= 8


def test_fim_stream_conforms(http):
    r, chunks, is_done = stream_chat(http, "/v1/fim/completions", {
        "model": "codestral-latest", "prompt": "import os\n", "max_tokens": 6})
    assert r.status_code == 200 and is_done
    for chunk in chunks:
        assert_valid(chunk, "CompletionChunk")
    assert chunks[-1]["usage"]["completion_tokens"] <= 6


def test_fim_min_tokens_forces_length(http):
    body = http.post("/v1/fim/completions", json={"model": "codestral-latest", "prompt": "x = 1",
                                                  "min_tokens": 5, "max_tokens": 5, "temperature": 0}).json()
    assert body["usage"]["completion_tokens"] == 5


def test_text_completion_shape(http):
    body = http.post("/v1/completions", json={"model": "mistral-small-latest", "prompt": ["Hello", "Bonjour"],
                                              "max_tokens": 4, "n": 2, "echo": True}).json()
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["choices"][0]["text"].startswith("Hello")
    assert body["choices"][2]["text"].startswith("Bonjour")
    assert body["usage"]["completion_tokens"] <= 16


def test_empty_prompts_are_answered(http):
    for path, body in (("/v1/fim/completions", {"model": "codestral-latest", "prompt": "", "suffix": ""}),
                       ("/v1/completions", {"model": "mistral-tiny", "prompt": ""})):
        r = http.post(path, json={**body, "max_tokens": 2})
        assert r.status_code == 200, r.text
