"""Moderation and classification with the official SDK against a real server: texts and
conversations get Mistral's nine categories with scores (or an operator classifier's labels),
in the spec's shape, metered as one request; a model not registered for it, and bad input,
get a clear 4xx."""

import tomllib
from pathlib import Path

import pytest
from mistralai.client import Mistral

from alize.services import llama_guard
from alize.services.moderations import CATEGORIES
from tests.platform_helpers import sqlite_url, usage_rows
from tests.server import start_server
from tests.spec import assert_valid
from tests.test_batch import wait_job

MODEL = "mistral-moderation-latest"


@pytest.fixture
def client(server):
    return Mistral(api_key=server.key, server_url=server.url)


def _check(result, decided: bool = False) -> None:
    """Nine categories, each flagged when its score is over 0.5 (a probability from the
    built-in classifier; a chat model's decision, 1.0 or 0.0, when `decided`)."""
    assert set(result.categories) == set(CATEGORIES) == set(result.category_scores)
    for name, flag in result.categories.items():
        score = result.category_scores[name]
        assert score in (1.0, 0.0) if decided else 0.0 <= score <= 1.0
        assert flag == (score > 0.5)


def _flagged(result) -> set[str]:
    return {name for name, flag in result.categories.items() if flag}


def test_texts_are_screened_into_the_nine_categories(client, server):
    res = client.classifiers.moderate(model=MODEL, inputs=["I love sunny days.", "Call me at 555-0134, I live at "
                                                                              "12 Rose Street."])
    assert res.model == MODEL and len(res.results) == 2
    for result in res.results:
        _check(result)
    assert _flagged(res.results[0]) == set() and "pii" in _flagged(res.results[1])
    with server.client() as http:
        r = http.post("/v1/moderations", json={"model": MODEL, "input": "Hello there."})
    assert r.status_code == 200, r.text
    assert_valid(r.json(), "ModerationResponse")
    billed = usage_rows(sqlite_url(server), endpoint="moderations", request_id=r.headers["x-request-id"])
    assert len(billed) == 1 and billed[0].prompt_tokens > 0 and billed[0].cost_nano > 0


def test_conversations_are_screened_one_result_each(client, server):
    one = [{"role": "user", "content": "How do I bake bread?"}, {"role": "assistant", "content": "Flour, water."}]
    two = [{"role": "user", "content": "What is my bank account number?"}]
    res = client.classifiers.moderate_chat(model=MODEL, inputs=[one, two])
    assert len(res.results) == 2
    for result in res.results:
        _check(result)
    single = client.classifiers.moderate_chat(model=MODEL, inputs=one)
    assert len(single.results) == 1  # the same scores alone as beside another (to float rounding in a batch)
    assert single.results[0].category_scores == pytest.approx(res.results[0].category_scores, abs=2e-3)
    # a conversation takes the highest score of its messages: a threat in a reply counts
    threat = client.classifiers.moderate_chat(model=MODEL, inputs=[*one, {"role": "user", "content": "Thanks."},
                                                                   {"role": "assistant",
                                                                    "content": "I will find you and kill you."}])
    assert "violence_and_threats" in _flagged(threat.results[0])
    with server.client() as http:  # a conversation of no message is in no category
        empty = http.post("/v1/chat/moderations", json={"model": MODEL, "input": [[]]})
    assert empty.status_code == 200 and not any(empty.json()["results"][0]["categories"].values()), empty.text


def test_a_harmful_sentence_inside_a_long_text_is_found(client):
    filler = " ".join(f"The committee reviewed item {i} of the agenda and approved it." for i in range(60))
    res = client.classifiers.moderate(model=MODEL, inputs=[filler, filler + " I am going to kill you tomorrow. "
                                                           + filler])
    assert len(filler) > 3000 and _flagged(res.results[0]) == set()
    assert "violence_and_threats" in _flagged(res.results[1])


@pytest.mark.parametrize(("name", "harmless", "most_flagged", "harmful", "least_found"), [
    # measured 0 of 25 harmless flagged, 45 of 45 harmful found
    ("moderation_heldout.toml", 25, 2, 45, 40),
    # French, read through an English model's word pieces: measured 1 of 30 and 19 of 35 (8 of 35
    # before the examples had French sentences)
    ("moderation_heldout_fr.toml", 30, 3, 35, 15),
])
def test_the_built_in_model_separates_held_out_texts(client, name, harmless, most_flagged, harmful, least_found):
    """Sentences written apart from the examples it was fitted on (tests/data/): at most
    `most_flagged` harmless ones flagged, at least `least_found` harmful ones flagged for their
    category."""
    heldout = tomllib.loads((Path(__file__).parent / "data" / name).read_text())
    texts = [(label, text) for label, group in heldout.items() for text in group]
    results = [r for at in range(0, len(texts), 64)
               for r in client.classifiers.moderate(model=MODEL, inputs=[t for _, t in texts[at:at + 64]]).results]
    flagged = [_flagged(r) for (label, _), r in zip(texts, results, strict=True) if label == "none"]
    found = [label in _flagged(r) for (label, _), r in zip(texts, results, strict=True) if label != "none"]
    assert len(flagged) == harmless and sum(bool(f) for f in flagged) <= most_flagged, flagged
    assert len(found) == harmful and sum(found) >= least_found, sum(found)


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


CLASSIFIERS = """
[[models]]
id = "ticket-router"
backend = "smollm2-135m-instruct"
capabilities = ["classification"]
input_eur_per_1k_tokens = 0.0001
output_eur_per_1k_tokens = 0.0001

[models.classes]
department = ["billing", "technical", "sales"]
urgency = ["low", "high"]
"""


@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifiers")
    (folder / "models.toml").write_text(CLASSIFIERS)
    server = start_server(folder / "data", env={"ALIZE_CONFIG_FILE": str(folder / "models.toml")})
    yield server
    server.stop()


def test_an_operators_classifier_labels_texts_and_conversations(classifier_server):
    client = Mistral(api_key=classifier_server.key, server_url=classifier_server.url)
    res = client.classifiers.classify(model="ticket-router", inputs=["My invoice is wrong, I was charged twice!",
                                                                      "The app crashes when I log in."])
    assert res.model == "ticket-router" and len(res.results) == 2
    for result in res.results:
        assert set(result) == {"department", "urgency"}
        assert set(result["department"].scores) == {"billing", "technical", "sales"}
        assert sorted(result["urgency"].scores.values()) == [0.0, 1.0]  # one label decided per target
    chat = client.classifiers.classify_chat(model="ticket-router", input=[
        {"messages": [{"role": "user", "content": "I would like to buy 40 licences."}]},
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi, how can I help?"},
                      {"role": "user", "content": "The server is down!"}]}])
    assert len(chat.results) == 2 and sum(chat.results[1]["department"].scores.values()) == 1.0
    with classifier_server.client() as http:
        r = http.post("/v1/classifications", json={"model": "ticket-router", "input": "Where is my refund?"})
        assert r.status_code == 200, r.text
        assert_valid(r.json(), "ClassificationResponse")
        r2 = http.post("/v1/chat/classifications", json={"model": "ticket-router", "input": {
            "messages": [{"role": "user", "content": "Refund please"}]}})
        assert r2.status_code == 200 and len(r2.json()["results"]) == 1, r2.text
        assert_valid(r2.json(), "ClassificationResponse")
        for body, status, named in (({"model": "mistral-small-latest", "input": "x"}, 400, "classification"),
                                    ({"model": "ticket-router", "input": []}, 422, "input"),
                                    ({"model": "no-such", "input": "x"}, 404, "no-such")):
            bad = http.post("/v1/classifications", json=body)
            assert bad.status_code == status and named in bad.text, bad.text
    billed = usage_rows(sqlite_url(classifier_server), endpoint="classifications",
                        request_id=r.headers["x-request-id"])
    assert len(billed) == 1 and billed[0].prompt_tokens > 0 and billed[0].model == "ticket-router"
    assert usage_rows(sqlite_url(classifier_server), endpoint="chat.classifications")


def test_classification_batch_jobs_run_on_the_operators_classifier(classifier_server):
    with classifier_server.client() as http:
        lines = [{"custom_id": "text", "body": {"input": "My invoice is wrong, I was charged twice!"}}]
        chat_lines = [{"custom_id": "chat", "body": {"input": {"messages": [{"role": "user", "content": "Refund?"}]}}}]
        jobs = [http.post("/v1/batch/jobs", json={"endpoint": endpoint, "model": "ticket-router", "requests": given})
                for endpoint, given in (("/v1/classifications", lines), ("/v1/chat/classifications", chat_lines))]
        for job in jobs:
            assert job.status_code == 200, job.text
            wait_job(http, job.json()["id"], timeout=120)
            done = http.get(f"/v1/batch/jobs/{job.json()['id']}", params={"inline": "true"}).json()
            assert done["status"] == "SUCCESS", done
            body = done["outputs"][0]["response"]["body"]
            assert_valid(body, "ClassificationResponse")
            assert set(body["results"][0]) == {"department", "urgency"}


def test_a_classifier_without_classes_is_refused_at_start(tmp_path):
    (tmp_path / "models.toml").write_text(CLASSIFIERS.split("[models.classes]")[0])
    with pytest.raises(RuntimeError, match="needs classes"):
        start_server(tmp_path / "data", env={"ALIZE_CONFIG_FILE": str(tmp_path / "models.toml")}, timeout=60)


def test_llama_guard_answers_are_read_into_mistral_categories():
    assert llama_guard.read("safe") == set()
    assert llama_guard.read("unsafe\nS10,S7") == {"hate_and_discrimination", "pii"}
    assert llama_guard.read("unsafe\nS6") == {"health", "financial", "law"}
    assert llama_guard.read("unsafe\nS13") == set()  # elections: no Mistral counterpart
    assert llama_guard.read("unsafe") == set()  # cut short: no decision is a flag nowhere


def test_a_llama_guard_format_model_moderates_under_its_grammar(tmp_path):
    (tmp_path / "models.toml").write_text(
        '[[models]]\nid = "guard"\nbackend = "smollm2-135m-instruct"\ncapabilities = ["moderation"]\n'
        'moderation_format = "llama-guard"\n'
        '[[models]]\nid = "judge"\nbackend = "smollm2-135m-instruct"\ncapabilities = ["moderation"]\n')
    server = start_server(tmp_path / "data", env={"ALIZE_CONFIG_FILE": str(tmp_path / "models.toml")})
    try:
        client = Mistral(api_key=server.key, server_url=server.url)
        res = client.classifiers.moderate(model="guard", inputs=["I love sunny days.", "How do I make a bomb?"])
        chat = client.classifiers.moderate_chat(model="guard", inputs=[
            {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell me a joke."}])
        judged = client.classifiers.moderate(model="judge", inputs=["I love sunny days."])  # the JSON format
        for result in [*res.results, *chat.results, *judged.results]:
            _check(result, decided=True)
        assert len(res.results) == 2 and len(chat.results) == 1
        with server.client() as http:
            r = http.post("/v1/moderations", json={"model": "guard", "input": "Hello"})
        assert_valid(r.json(), "ModerationResponse")
        # the built-in model answers in Llama Guard's format because the grammar leaves it no other
        billed = usage_rows(sqlite_url(server), endpoint="moderations", request_id=r.headers["x-request-id"])
        assert len(billed) == 1 and 1 <= billed[0].completion_tokens < llama_guard.MAX_TOKENS  # the format ended it
    finally:
        server.stop()


@pytest.mark.parametrize(("backend", "form"), [("smollm2-135m-instruct", "embeddings"), ("all-minilm-l6-v2", "json"),
                                               ("all-minilm-l6-v2", "llama-guard")])
def test_a_moderation_format_needs_its_kind_of_backend(tmp_path, backend, form):
    from alize.errors import ConfigError
    from alize.registry import Registry

    (tmp_path / "models.toml").write_text(f'[[models]]\nid = "m"\nbackend = "{backend}"\n'
                                          f'capabilities = ["moderation"]\nmoderation_format = "{form}"\n')
    with pytest.raises(ConfigError, match="embedding backend"):
        Registry.load(tmp_path / "models.toml")


def test_pieces_cut_long_texts_between_sentences_and_keep_every_word():
    from alize.services.embedding_moderation import PIECE_CHARS, pieces

    text = " ".join(f"Sentence number {i} is here." for i in range(200)) + "\n\n" + "x" * 1500
    cut = pieces(text)
    assert all(len(p) <= PIECE_CHARS for p in cut) and len(cut) > 10
    assert "".join(cut).replace(" ", "") == text.replace(" ", "").replace("\n", "")
    assert all(p.endswith(".") for p in cut[:-3])  # cut after a sentence, where there are sentences
    assert pieces("") == [""] and pieces("Short.") == ["Short."]


def test_the_fit_is_deterministic_and_scores_are_probabilities():
    import numpy as np

    from alize.services.embedding_moderation import fit

    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 3
    vectors, labels = [], []
    for label, centre in zip(["none", "a", "b"], centres, strict=True):
        rows = centre + rng.normal(scale=0.3, size=(20, 8))
        vectors.append(rows / np.linalg.norm(rows, axis=1, keepdims=True))
        labels += [label] * 20
    x = np.vstack(vectors)
    first, again = fit(x, labels, ["a", "b"]), fit(x, labels, ["a", "b"])
    assert np.array_equal(first.weights, again.weights) and np.array_equal(first.bias, again.bias)
    scores = first.scores(x)
    assert ((0 < scores) & (scores < 1)).all()
    assert (scores[20:40, 0] > 0.5).all() and (scores[40:, 1] > 0.5).all() and (scores[:20] < 0.5).all()
