"""GET /v1/models tells the truth about what backs each id, in the spec's shape."""

from tests.spec import assert_valid

MISTRAL_NAMES = ["mistral-tiny", "mistral-small", "mistral-small-latest", "mistral-medium",
                 "mistral-medium-latest", "mistral-large", "mistral-large-latest", "open-mistral-7b",
                 "open-mixtral-8x7b", "codestral-latest", "ministral-3b-latest", "ministral-8b-latest",
                 "mistral-embed"]


def test_list_conforms_and_covers_mistral_names(http):
    body = http.get("/v1/models").json()
    assert_valid(body, "ModelList")
    assert body["object"] == "list"
    cards = {c["id"]: c for c in body["data"]}
    assert set(MISTRAL_NAMES) <= set(cards)
    for card in cards.values():
        assert card["type"] == "base" and isinstance(card["created"], int)
    assert cards["mistral-small-latest"]["name"] == "smollm2-135m-instruct"
    assert "SmolLM2-135M" in cards["mistral-small-latest"]["description"]
    assert cards["mistral-small-latest"]["max_context_length"] == 8192
    assert cards["mistral-small"]["aliases"] == ["mistral-small-latest"]
    assert cards["mistral-embed"]["name"] == "all-minilm-l6-v2"
    assert not cards["mistral-embed"]["capabilities"]["completion_chat"]
    assert cards["codestral-latest"]["capabilities"]["completion_fim"]


def test_retrieve(http):
    card = http.get("/v1/models/codestral-latest").json()
    assert_valid(card, "BaseModelCard")
    assert card["id"] == "codestral-latest"


def test_every_listed_chat_model_answers(http):
    cards = http.get("/v1/models").json()["data"]
    for card in cards:
        if card["capabilities"]["completion_chat"]:
            r = http.post("/v1/chat/completions", json={
                "model": card["id"], "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})
            assert r.status_code == 200, (card["id"], r.text)
            assert r.json()["model"] == card["id"]
