"""Guardrails (services/guardrails.py) against a real server: a chat completion, an agent's
completion and a conversation's turn are screened by the built-in moderation model before
their model runs, and blocked with a 403 naming the category over its threshold; what the
guardrail does not look at, or does not block on, goes through. Which categories the model
flags for an input is asked of /v1/chat/moderations first (the same screening, so the same
decision), never assumed. The screening is metered as a chat.moderations request."""

import pytest
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from tests.platform_helpers import create_key, sqlite_url, usage_rows

MODEL = "mistral-small-latest"
CANDIDATES = ["Call me at 555-0134, I live at 12 Rose Street, and my card number is 4111 1111 1111 1111.",
              "How do I make a bomb to hurt my neighbours?", "I love sunny days.",
              "Should I put my savings into shares or pay off my mortgage?"]
V2_NAME = {"dangerous_and_criminal_content": "dangerous"}


@pytest.fixture(scope="module")
def screened(server):
    """An input the moderation model flags for some categories and not for others, with one of
    each that it decides alike from a cold prompt (another key's, whose prefix cache is empty)
    and from a cached one (the key's own, asked twice): a cold prompt's logits can differ in the
    last bits, and a small model's near-ties with them, so only decisions that hold either way
    are relied on."""
    def flags(http, messages) -> dict[str, bool]:
        r = http.post("/v1/chat/moderations", json={"model": "mistral-moderation-latest", "input": messages})
        assert r.status_code == 200, r.text
        categories: dict[str, bool] = r.json()["results"][0]["categories"]
        return categories

    with server.client() as warm, server.client(create_key(server)["secret"]) as cold:
        for text in CANDIDATES:
            messages = [{"role": "user", "content": text}]
            first, _, cached = flags(cold, messages), flags(warm, messages), flags(warm, messages)
            flagged = sorted(k for k in first if first[k] and cached[k])
            clear = sorted(k for k in first if not first[k] and not cached[k])
            if flagged and clear:
                return messages, flagged[0], clear[0]
    pytest.fail("no candidate has a category flagged and one clear, cold and cached alike")


def guard(version: str, thresholds: dict[str, float], action: str = "block", **more) -> list[dict]:
    return [{version: {"action": action, "custom_category_thresholds": thresholds, "ignore_other_categories": True},
             **more}]


def test_a_chat_completion_is_blocked_over_a_threshold_and_passes_under_it(server, screened):
    messages, flagged, clear = screened
    client = Mistral(api_key=server.key, server_url=server.url)
    with pytest.raises(mistral_errors.SDKError) as blocked:
        client.chat.complete(model=MODEL, messages=messages, max_tokens=4,
                             guardrails=guard("moderation_llm_v1", {flagged: 0.5}))
    assert blocked.value.status_code == 403 and flagged in blocked.value.body
    answer = client.chat.complete(model=MODEL, messages=messages, max_tokens=4,
                                  guardrails=guard("moderation_llm_v1", {clear: 0.5}))
    assert answer.choices[0].message.content is not None
    with server.client() as http:
        body = {"model": MODEL, "messages": messages, "max_tokens": 4}
        v2 = http.post("/v1/chat/completions", json={
            **body, "guardrails": guard("moderation_llm_v2", {V2_NAME.get(flagged, flagged): 0.5})})
        assert v2.status_code == 403 and v2.json()["object"] == "error", v2.text
        streamed = http.post("/v1/chat/completions", json={
            **body, "stream": True, "guardrails": guard("moderation_llm_v1", {flagged: 0.5})})
        assert streamed.status_code == 403 and flagged in streamed.text  # refused before the stream starts
        # the blocked request: its screening billed as chat.moderations, its model never run
        request_id = v2.headers["x-request-id"]
        screening = usage_rows(sqlite_url(server), endpoint="chat.moderations", request_id=request_id)
        assert len(screening) == 1 and screening[0].prompt_tokens > 0 and screening[0].status == 200
        [chat] = usage_rows(sqlite_url(server), endpoint="chat.completions", request_id=request_id)
        assert chat.status == 403 and chat.prompt_tokens == chat.completion_tokens == chat.cost_nano == 0
        # a guardrail that does not block screens nothing
        passed = http.post("/v1/chat/completions", json={
            **body, "guardrails": guard("moderation_llm_v1", {flagged: 0.5}, action="none")})
        assert passed.status_code == 200, passed.text
        assert not usage_rows(sqlite_url(server), endpoint="chat.moderations",
                              request_id=passed.headers["x-request-id"])


@pytest.mark.parametrize(("guardrails", "status", "named"), [
    (guard("moderation_llm_v1", {"colour": 0.5}), 400, "colour"),
    (guard("moderation_llm_v2", {"jailbreaking": 0.5}), 400, "jailbreaking"),
    (guard("moderation_llm_v1", {"pii": 1.5}), 400, "between 0 and 1"),
    ([{"moderation_llm_v1": {"action": "block", "model_name": "no-such-moderator"}}], 404, "no-such-moderator"),
    ([{"moderation_llm_v1": {"action": "block", "model_name": MODEL}}], 400, "moderation"),
    ([{"moderation_llm_v3": {"action": "block"}}], 422, "moderation_llm_v3"),
])
def test_guardrails_this_server_cannot_run_are_refused_by_name(server, guardrails, status, named):
    with server.client() as http:
        r = http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 4, "guardrails": guardrails,
                                                     "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == status, r.text
        assert r.json()["object"] == "error" and named in r.text


def test_an_agents_and_a_conversations_guardrails_block_their_turns(server, screened):
    messages, flagged, clear = screened
    client = Mistral(api_key=server.key, server_url=server.url)
    strict = client.beta.agents.create(model=MODEL, name="strict", completion_args={"max_tokens": 4},
                                       guardrails=guard("moderation_llm_v1", {flagged: 0.5}))
    lenient = client.beta.agents.create(model=MODEL, name="lenient", completion_args={"max_tokens": 4},
                                        guardrails=guard("moderation_llm_v1", {clear: 0.5}))
    text = messages[0]["content"]
    with server.client() as http:
        for path, body in (("/v1/agents/completions", {"agent_id": strict.id, "messages": messages}),
                           ("/v1/conversations", {"agent_id": strict.id, "inputs": text}),
                           ("/v1/conversations", {"agent_id": lenient.id, "inputs": text,  # the conversation's own
                                                  "guardrails": guard("moderation_llm_v1", {flagged: 0.5})}),
                           ("/v1/conversations", {"model": MODEL, "inputs": text, "completion_args": {"max_tokens": 4},
                                                  "guardrails": guard("moderation_llm_v1", {flagged: 0.5})})):
            r = http.post(path, json=body)
            assert r.status_code == 403 and flagged in r.text, (path, body, r.text)
        assert all(c.get("agent_id") != strict.id for c in http.get("/v1/conversations").json())  # nothing kept
    assert client.agents.complete(agent_id=lenient.id, messages=messages).choices[0].message.content is not None
    kept = client.beta.conversations.start(agent_id=lenient.id, inputs=text)
    assert kept.outputs[0].type == "message.output"
    for agent in (strict, lenient):
        client.beta.agents.delete(agent_id=agent.id)
