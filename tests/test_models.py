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
    # tools work on every chat model (the grammar writes the calls): the cards say so
    assert all(c["capabilities"]["function_calling"] == c["capabilities"]["completion_chat"] for c in cards.values())


def test_dated_and_family_ids_of_mistral_examples_are_served(http):
    for model_id, backed_by in (("mistral-large-2411", "mistral-large-latest"),
                                ("mistral-medium-2505", "mistral-medium-latest"),
                                ("mistral-medium-3-5", "mistral-medium-latest"),
                                ("mistral-small-2506", "mistral-small-latest"),
                                ("codestral-2501", "codestral-latest")):
        r = http.post("/v1/chat/completions", json={"model": model_id, "max_tokens": 1,
                                                    "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200 and r.json()["model"] == model_id, r.text
        card = http.get(f"/v1/models/{model_id}").json()
        assert card["id"] == model_id and backed_by in card["aliases"], card
    r = http.post("/v1/embeddings", json={"model": "codestral-embed", "input": "x"})
    assert r.status_code == 200, r.text
    for model_id, capability in (("pixtral-large-2411", "vision"), ("mistral-ocr-latest", "OCR"),
                                 ("voxtral-mini-2507", "audio")):
        r = http.post("/v1/chat/completions", json={"model": model_id, "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 400 and capability in r.json()["message"], r.text
    assert http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [
        {"role": "user", "content": "x"}]}).status_code == 404


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
