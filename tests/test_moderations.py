"""Moderation with the official SDK against a real server: texts and conversations get
Mistral's nine categories with scores, in the spec's shape, metered as one request; a model
not registered for moderation, and bad input, get a clear 4xx."""

import pytest
from mistralai.client import Mistral

from alize.services.moderations import CATEGORIES
from tests.platform_helpers import sqlite_url, usage_rows
from tests.spec import assert_valid

MODEL = "mistral-moderation-latest"


@pytest.fixture
def client(server):
    return Mistral(api_key=server.key, server_url=server.url)


def _check(result) -> None:
    assert set(result.categories) == set(CATEGORIES) == set(result.category_scores)
    for name, flag in result.categories.items():
        assert result.category_scores[name] == (1.0 if flag else 0.0)


def test_texts_are_screened_into_the_nine_categories(client, server):
    res = client.classifiers.moderate(model=MODEL, inputs=["I love sunny days.", "Call me at 555-0134, I live at "
                                                                              "12 Rose Street."])
    assert res.model == MODEL and len(res.results) == 2
    for result in res.results:
        _check(result)
    with server.client() as http:
        r = http.post("/v1/moderations", json={"model": MODEL, "input": "Hello there."})
    assert r.status_code == 200, r.text
    assert_valid(r.json(), "ModerationResponse")
    billed = usage_rows(sqlite_url(server), endpoint="moderations", request_id=r.headers["x-request-id"])
    assert len(billed) == 1 and billed[0].prompt_tokens > 0 and billed[0].cost_nano > 0


def test_conversations_are_screened_one_result_each(client):
    one = [{"role": "user", "content": "How do I bake bread?"}, {"role": "assistant", "content": "Flour, water."}]
    two = [{"role": "user", "content": "What is my bank account number?"}]
    res = client.classifiers.moderate_chat(model=MODEL, inputs=[one, two])
    assert len(res.results) == 2
    for result in res.results:
        _check(result)
    single = client.classifiers.moderate_chat(model=MODEL, inputs=one)
    assert len(single.results) == 1


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/v1/moderations", {"model": "mistral-small-latest", "input": "x"}, 400, "moderation"),
    ("/v1/moderations", {"model": "no-such-model", "input": "x"}, 404, "no-such-model"),
    ("/v1/moderations", {"model": MODEL, "input": []}, 422, "input"),
    ("/v1/moderations", {"model": MODEL, "input": ["x"] * 65}, 400, "at most 64"),
    ("/v1/moderations", {"model": MODEL, "input": "word " * 9000}, 400, "context"),
    ("/v1/chat/moderations", {"model": MODEL, "input": [{"content": "no role"}]}, 400, "role"),
    ("/v1/chat/moderations", {"model": MODEL, "input": []}, 422, "input"),
])
def test_bad_moderation_requests_are_4xx(server, path, body, status, named):
    with server.client() as http:
        r = http.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["object"] == "error" and named in r.text
