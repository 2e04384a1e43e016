"""Predicted outputs: the drafter (engine/drafting.py) and the engine's speculative
verification over the scripted FakeRunner — the same answer as without a prediction, in
fewer steps when the prediction is right, whatever it holds; then a real server on the
built-in model: the same text with and without a prediction, alone and batched with 15
other sequences, greedy or seeded, with and without a grammar, and usage that counts the
drafts."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from alize.engine.drafting import MAX_DRAFT, Drafter, StepCost, draft_length
from alize.engine.params import FinishReason, GenerationRequest, SamplingParams
from tests.fake_runner import WORDS, FakeRunner
from tests.server import start_server
from tests.test_core_fake import collect, engine, run


def words(text: str) -> list[int]:
    return [WORDS.index(f" {w}") for w in text.split()]


SCRIPT = words("w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20 w21 w22 w23 w24 w25 w26 w27 w28 w29")


def scripted(prompt: list[int]) -> list[int]:
    return SCRIPT


def ask(rid: str, prediction: list[int] | None, max_tokens: int = 64, min_tokens: int = 0,
        stop: tuple[str, ...] = ()) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, min_tokens=min_tokens, stop=stop)
    return GenerationRequest(rid, [1, 5, 6, 7], params, cache_scope=None, prediction=prediction)


def answer(*requests: GenerationRequest, slots: int = 4) -> tuple[list[str], list, int]:
    runner = FakeRunner(scripted, slots=slots)
    core, client = engine(runner, slots=slots, capacity=16)
    try:
        texts, finals = run(collect(client, *requests))
    finally:
        core.stop()
    return texts, finals, runner.steps


ALONE, _, ALONE_STEPS = answer(ask("plain", None))


@pytest.mark.parametrize("name, prediction", [
    ("exact", SCRIPT),
    ("edited", words("w10 w11 w12 w40 w41 w15 w16 w17 w18 w19 w20 w50 w23 w24 w25 w26 w27 w28 w29")),
    ("wrong", words("w40 w41 w42 w43 w44 w45 w46 w47 w48 w49")),
    ("longer", SCRIPT + words("w30 w31 w32 w33")),
    ("empty-ish", words("w10")),
])
def test_the_answer_is_the_same_whatever_the_prediction(name, prediction):
    texts, finals, steps = answer(ask(name, prediction))
    assert texts == ALONE
    final = finals[0]
    assert final.finish_reason is FinishReason.STOP and final.num_completion_tokens == len(SCRIPT)
    if name == "exact":  # the prompt's step, then one draft of the rest: all kept
        assert steps == 2 < ALONE_STEPS == len(SCRIPT) + 1
        # every token but the first (the prompt's step); the end was sampled after the draft
        assert (final.num_draft_accepted, final.num_draft_rejected) == (len(SCRIPT) - 1, 0)
    if name == "edited":  # found again after each edit
        assert final.num_draft_accepted == 11 and steps < ALONE_STEPS / 2  # 2 tokens in common resync
    if name == "wrong":
        assert final.num_draft_accepted == 0 and steps == ALONE_STEPS


def test_limits_hold_with_a_prediction():
    texts, finals, _ = answer(ask("short", SCRIPT, max_tokens=5))
    assert texts == [" w10 w11 w12 w13 w14"] and finals[0].finish_reason is FinishReason.LENGTH
    texts, finals, _ = answer(ask("stop", SCRIPT, stop=(" w13",)))
    assert texts == [" w10 w11 w12"] and finals[0].finish_reason is FinishReason.STOP
    # the end banned until min_tokens: drafts never cross that boundary with the banning sampler
    texts, finals, _ = answer(ask("min", SCRIPT + words("w30"), min_tokens=22, max_tokens=22))
    assert texts == [" ".join([""] + [f"w{i}" for i in range(10, 30)]) + " w2 w2"]


def test_sequences_with_and_without_predictions_batched_together():
    requests = [ask(f"r{i}", SCRIPT if i % 2 else None) for i in range(4)]
    texts, finals, _ = answer(*requests)
    assert texts == ALONE * 4
    assert [f.num_draft_accepted > 0 for f in finals] == [False, True, False, True]


def test_the_drafter_follows_the_output_and_finds_it_again_after_an_edit():
    source = list(range(100, 140))
    drafter = Drafter.following(source)
    assert drafter.propose([], 4) == [100, 101, 102, 103]
    drafter.update(4, 4, [100, 101, 102, 103, 104])  # all kept, and the next one as predicted
    assert drafter.propose([], 3) == [105, 106, 107]
    drafter.update(3, 1, [105, 7])  # an edit: 7 where 106 was predicted
    assert drafter.cursor is None and drafter.propose([105, 7], 4) == []  # nothing to match yet
    drafter.update(0, 0, [8])
    drafter.update(0, 0, [108])
    assert drafter.propose([7, 8, 108], 4) == []  # one token in common is too little
    drafter.update(0, 0, [109])
    assert drafter.propose([7, 8, 108, 109], 4) == [110, 111, 112, 113]  # found again
    assert (drafter.accepted, drafter.rejected) == (5, 2)


def test_drafts_are_as_long_as_they_pay_for_themselves():
    free = StepCost()
    cpu = StepCost(((1, 1.0), (2, 1.75), (9, 3.6), (49, 11.8)))  # the built-in model on two CPU cores
    assert draft_length(0.9, free, 60) == MAX_DRAFT  # free (a GPU, the fake): as long as allowed
    assert draft_length(0.9, free, 3) == 3
    assert 2 <= draft_length(0.8, cpu, 48) <= 6  # on two CPU cores: short drafts from a source often wrong
    assert draft_length(0.999, cpu, 48) == 48  # long ones from a source nearly always right
    assert draft_length(0.5, cpu, 48) == 0  # and none from one wrong every other token
    assert draft_length(0.97, cpu, 48) > 3 * draft_length(0.97, StepCost.linear(0.75), 48)  # not every token costs the 2nd's
    assert draft_length(0.9, cpu, 48, others=15) < draft_length(0.9, cpu, 48)  # a step of 16 must save more
    assert draft_length(0.999, StepCost.linear(float("inf")), 48) == 0  # no measure: no drafts
    assert cpu(1) == 1.0 and cpu(5) == pytest.approx(1.75 + 1.85 * 3 / 7) and cpu(60) == pytest.approx(11.8 + 8.2 * 11 / 40)
    linear = StepCost.linear(0.6)  # every token past the first costs 0.6 of a step
    source = [1, 2, 3, 4] * 10
    drafter = Drafter.looking_up(source)
    for step in range(4):  # the output is found in the source, then departs from it
        assert drafter.propose([3, 4], 16, cost=linear) == ([1] if step == 0 else [])
        drafter.update(0, 0, [9])
    assert drafter.keep < 0.5  # departures weigh: no draft pays any more
    for _ in range(12):  # the source foresees the output again, undrafted: it earns its trust back
        drafter.propose([3, 4], 16, cost=linear)
        drafter.update(0, 0, [1, 2, 3, 4])
    assert drafter.keep > 0.85 and len(drafter.propose([3, 4], 16, cost=linear)) > 1


def test_prompt_lookup_drafts_from_the_prompt():
    drafter = Drafter.looking_up([1, 2, 3, 4, 5, 6, 2, 3, 9])
    assert drafter.propose([], 8) == []
    assert drafter.propose([2, 3], 8) == [4, 5, 6, 2, 3, 9]  # the first place, where the output moves on
    drafter.update(6, 2, [4, 5, 7])
    assert drafter.propose([2, 3, 4, 5, 7], 8) == []


# -- a real server -------------------------------------------------------------------------

CODE = """def compute_total(values):
    total = 0
    for value in values:
        total += value
    return total


def average(values):
    return compute_total(values) / len(values)
"""
EDIT = "Rename compute_total to sum_values in this code. Reply with the code only.\n\n" + CODE
RENAMED = CODE.replace("compute_total", "sum_values")
TOPICS = ["cats", "the sea", "Paris", "bread", "rain", "music", "trains", "snow", "coffee", "stars",
          "gardens", "chess", "rivers", "bees", "clocks"]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "pet", "strict": True, "schema": {
    "type": "object", "properties": {"name": {"type": "string"}, "legs": {"type": "integer"}},
    "required": ["name", "legs"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("predicted"), env={
        "ALIZE_PARALLEL": "16", "ALIZE_KV_LAYOUT": "per-sequence"})
    yield srv
    srv.stop()


def _chat(client: httpx.Client, content: str, prediction: str | list | None = None, **more) -> dict:
    body = {"model": "mistral-small-latest", "temperature": 0, "max_tokens": 80,
            "messages": [{"role": "user", "content": content}], **more}
    if prediction is not None:
        body["prediction"] = {"type": "content", "content": prediction}
    r = client.post("/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _text(answer: dict) -> str:
    return answer["choices"][0]["message"]["content"]


def test_the_same_answer_with_a_right_partly_right_or_wrong_prediction(wide_server):
    with wide_server.client() as client:
        _chat(client, EDIT)  # the prompt cached: a cold prompt may end in another near-tie (docs/tuning.md)
        plain = _chat(client, EDIT)
        answer = _text(plain)  # the model's own answer: a prediction every draft of which holds
        words = answer.split(" ")
        edited = " ".join(words[:8] + ["something", "else", "entirely"] + words[12:])
        right = _chat(client, EDIT, answer)
        partly = _chat(client, EDIT, edited)
        wrong = _chat(client, EDIT, "The quick brown fox jumps over the lazy dog. " * 8)
        parts = _chat(client, EDIT, [{"type": "text", "text": answer}])  # OpenAI's text parts
    assert _text(right) == _text(partly) == _text(wrong) == _text(parts) == answer
    tokens = plain["usage"]["completion_tokens"]
    assert right["usage"]["completion_tokens"] == tokens  # billed the same
    # how much is drafted depends on what a draft costs on this machine (measured at start):
    # the counts are checked on the fake runner above, the text here
    assert right["usage"]["completion_tokens_details"]["rejected_prediction_tokens"] <= 4
    assert wrong["usage"]["completion_tokens_details"]["accepted_prediction_tokens"] < 5
    assert plain["usage"]["completion_tokens_details"] == {"accepted_prediction_tokens": 0,
                                                           "rejected_prediction_tokens": 0}


def test_the_same_answer_batched_with_15_other_sequences(wide_server):
    with wide_server.client() as client:
        for _ in range(2):  # warm: every answer below from a cached prompt
            others_alone = [_text(_chat(client, f"Write one sentence about {t}.", max_tokens=16)) for t in TOPICS]
        _chat(client, EDIT)
        alone = _text(_chat(client, EDIT))
        with ThreadPoolExecutor(16) as pool:
            edited = pool.submit(_chat, client, EDIT, alone)  # first: into the slot that holds its prompt
            time.sleep(0.3)
            others = list(pool.map(lambda t: _chat(client, f"Write one sentence about {t}.", alone, max_tokens=16),
                                   TOPICS))
    assert _text(edited.result()) == alone
    assert [_text(o) for o in others] == others_alone  # a prediction that does not fit changes nothing


def test_a_seeded_sample_and_a_schema_are_unchanged_by_a_prediction(wide_server):
    with wide_server.client() as client:
        sampled = {"temperature": 0.7, "random_seed": 11}
        _chat(client, EDIT)  # its prompt cached again: both answers below from the same prompt KV
        assert _text(_chat(client, EDIT, RENAMED, **sampled)) == _text(_chat(client, EDIT, **sampled))
        ask = "Describe a pet as JSON."
        _chat(client, ask, response_format=SCHEMA)
        plain = _chat(client, ask, response_format=SCHEMA)
        predicted = _chat(client, ask, _text(plain), response_format=SCHEMA)  # checked by the grammar too
        wrong = _chat(client, ask, '{"name": "Rex the dog", "legs": 3}', response_format=SCHEMA)
    assert _text(predicted) == _text(wrong) == _text(plain)


def test_a_prediction_that_is_not_text_is_refused_by_name(wide_server):
    with wide_server.client() as client:
        r = client.post("/v1/chat/completions", json={
            "model": "mistral-small-latest", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}],
            "prediction": {"type": "content", "content": [{"type": "image_url", "image_url": "http://x"}]}})
        bad_type = client.post("/v1/chat/completions", json={
            "model": "mistral-small-latest", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}],
            "prediction": {"type": "file", "content": "x"}})
        too_long = client.post("/v1/chat/completions", json={
            "model": "mistral-small-latest", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}],
            "prediction": {"type": "content", "content": "word " * 9000}})
    assert r.status_code == 400 and r.json()["param"] == "prediction"
    assert bad_type.status_code == 422
    assert too_long.status_code == 400 and "context" in too_long.json()["message"]


def test_prompt_lookup_gives_the_same_answers(tmp_path_factory):
    """Two servers with the same history, one drafting from prompts (ALIZE_PROMPT_LOOKUP): the
    same answers. (Same history: how a cached prefix was computed can tip a near-tie.)"""
    asks = ["Repeat this sentence exactly: the quick brown fox jumps over the lazy dog near the river bank.",
            EDIT]
    answers = {}
    for name in ("off", "on"):
        srv = start_server(tmp_path_factory.mktemp(f"lookup-{name}"), env={"ALIZE_PROMPT_LOOKUP": str(name == "on")})
        try:
            with srv.client() as client:
                answers[name] = [_chat(client, ask) for ask in asks + asks]
        finally:
            srv.stop()
    assert [_text(a) for a in answers["on"]] == [_text(a) for a in answers["off"]]
    assert [a["usage"]["completion_tokens"] for a in answers["on"]] == [
        a["usage"]["completion_tokens"] for a in answers["off"]]
