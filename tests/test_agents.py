"""Agents (/v1/agents) with the official SDK against a real server: create, versions,
aliases, lists and pages, delete; /v1/agents/completions answering as the agent; another
workspace sees nothing; bad input is refused by name and changes nothing. Every answer
validates against the spec (tests/mistral-api/openapi-beta.yaml)."""

import pytest
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from tests.platform_helpers import create_key, sqlite_url, usage_rows
from tests.spec import assert_valid

pytestmark = pytest.mark.filterwarnings("ignore:.*DEPRECATED.*:DeprecationWarning")  # GET /v1/agents, tested too

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def client(server):
    return Mistral(api_key=server.key, server_url=server.url)


def _raw(server, agent_id: str, query: str = "") -> dict:
    with server.client() as http:
        r = http.get(f"/v1/agents/{agent_id}{query}")
    assert r.status_code == 200, r.text
    assert_valid(r.json(), "Agent")
    return r.json()


def test_an_agent_is_created_versioned_aliased_and_deleted(client, server):
    agent = client.beta.agents.create(
        model="mistral-small-latest", name="weather bot", description="Says the weather",
        instructions="Answer briefly.", tools=[WEATHER], completion_args={"temperature": 0.3, "max_tokens": 20},
        metadata={"team": "meteo"}, version_message="first")
    assert agent.id.startswith("ag_") and (agent.version, agent.versions) == (0, [0])
    assert agent.tools[0].function.name == "get_weather" and agent.completion_args.temperature == 0.3
    assert (agent.metadata, agent.version_message, agent.source) == ({"team": "meteo"}, "first", "api")
    assert _raw(server, agent.id)["instructions"] == "Answer briefly."

    updated = client.beta.agents.update(agent_id=agent.id, instructions="Answer in one word.")
    assert (updated.version, updated.versions, updated.name) == (1, [0, 1], "weather bot")
    assert updated.version_message is None and updated.tools[0].function.name == "get_weather"
    assert client.beta.agents.get(agent_id=agent.id).instructions == "Answer in one word."
    assert client.beta.agents.get(agent_id=agent.id, agent_version=0).instructions == "Answer briefly."
    assert [v.version for v in client.beta.agents.list_versions(agent_id=agent.id)] == [1, 0]
    assert client.beta.agents.get_version(agent_id=agent.id, version="0").version_message == "first"

    switched = client.beta.agents.update_version(agent_id=agent.id, version=0)
    assert (switched.version, switched.instructions) == (0, "Answer briefly.")
    assert _raw(server, agent.id)["version"] == 0

    alias = client.beta.agents.create_version_alias(agent_id=agent.id, alias="prod", version=1)
    assert (alias.alias, alias.version) == ("prod", 1)
    moved = client.beta.agents.create_version_alias(agent_id=agent.id, alias="prod", version=0)
    assert moved.version == 0 and moved.created_at == alias.created_at
    assert client.beta.agents.get(agent_id=agent.id, agent_version="prod").version == 0
    assert [a.alias for a in client.beta.agents.list_version_aliases(agent_id=agent.id)] == ["prod"]
    client.beta.agents.delete_version_alias(agent_id=agent.id, alias="prod")
    assert client.beta.agents.list_version_aliases(agent_id=agent.id) == []

    client.beta.agents.delete(agent_id=agent.id)
    with pytest.raises(mistral_errors.SDKError) as gone:
        client.beta.agents.get(agent_id=agent.id)
    assert gone.value.status_code == 404


def test_lists_filter_and_pages_follow_their_cursor(client, server):
    made = [client.beta.agents.create(model="mistral-small-latest", name=f"pager {i}", metadata={"batch": "p"})
            for i in range(5)]
    newest_first = [a.id for a in reversed(made)]
    listed = client.beta.agents.list(page_size=1000, search="pager")
    assert [a.id for a in listed] == newest_first
    assert [a.id for a in client.beta.agents.list(name="pager 3")] == [made[3].id]
    assert [a.id for a in client.beta.agents.list(page=1, page_size=2, search="pager")] == newest_first[2:4]
    assert {a.id for a in client.beta.agents.list(metadata={"batch": "p"})} == set(newest_first)
    assert client.beta.agents.list(metadata={"batch": "q"}) == []

    seen, page = [], client.beta.agents.list_pages(page_size=2, search="pager")
    while page is not None:
        assert_valid(page.result.model_dump(mode="json", by_alias=True), "AgentListPage")
        seen += [a.id for a in page.result.data]
        page = page.next()
    assert seen == newest_first
    with server.client() as http:
        r = http.get("/v1/agents/pages", params={"page_token": "not-a-token"})
    assert r.status_code == 400 and r.json()["param"] == "page_token"
    for agent in made:
        client.beta.agents.delete(agent_id=agent.id)


def test_another_workspace_cannot_see_use_or_change_an_agent(client, server):
    with server.client(server.admin_key) as admin:
        admin.post("/admin/v1/workspaces", json={"name": "agents-other"})
    other = create_key(server, workspace="agents-other")
    agent = client.beta.agents.create(model="mistral-small-latest", name="private")
    with server.client(other["secret"]) as theirs:
        assert agent.id not in [a["id"] for a in theirs.get("/v1/agents").json()]
        for r in (theirs.get(f"/v1/agents/{agent.id}"), theirs.patch(f"/v1/agents/{agent.id}", json={"name": "x"}),
                  theirs.delete(f"/v1/agents/{agent.id}"), theirs.get(f"/v1/agents/{agent.id}/versions"),
                  theirs.put(f"/v1/agents/{agent.id}/aliases", params={"alias": "a", "version": 0}),
                  theirs.post("/v1/agents/completions", json={
                      "agent_id": agent.id, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})):
            assert r.status_code == 404 and r.json()["object"] == "error", r.text
        assert theirs.post("/v1/agents", json={"model": "mistral-small-latest", "name": "h",
                                               "handoffs": [agent.id]}).status_code == 404
    assert client.beta.agents.get(agent_id=agent.id).versions == [0]  # unchanged
    client.beta.agents.delete(agent_id=agent.id)


@pytest.mark.parametrize(("body", "status", "named"), [
    ({"model": "no-such-model", "name": "x"}, 404, "no-such-model"),
    ({"model": "mistral-embed", "name": "x"}, 400, "completion_chat"),
    ({"model": "mistral-small-latest", "name": "x", "tools": [{"type": "web_search"}]}, 400, "web_search"),
    ({"model": "mistral-small-latest", "name": "x", "tools": [{"type": "code_interpreter"}]}, 400, "code_interpreter"),
    ({"model": "mistral-small-latest", "name": "x", "tools": [{"type": "image_generation"}]}, 400, "image_generation"),
    ({"model": "mistral-small-latest", "name": "x",
      "tools": [{"type": "document_library", "library_ids": ["no-such-lib"]}]}, 404, "no-such-lib"),
    ({"model": "mistral-small-latest", "name": "x",
      "tools": [{"type": "function", "function": {"name": "bad name", "parameters": {}}}]}, 400, "function.name"),
    ({"model": "mistral-small-latest", "name": "x", "tools": [WEATHER, WEATHER]}, 400, "defined twice"),
    ({"model": "mistral-small-latest", "name": "x", "handoffs": ["ag_nobody"]}, 404, "ag_nobody"),
    ({"model": "mistral-small-latest", "name": "x", "guardrails": [{"moderation_llm_v1": {
        "action": "block", "custom_category_thresholds": {"colour": 0.5}}}]}, 400, "colour"),
    ({"model": "mistral-small-latest", "name": "x", "guardrails": [{"moderation_llm_v3": {}}]}, 400,
     "moderation_llm_v3"),
    ({"model": "mistral-small-latest", "name": "x", "completion_args": {"temperature": 1.5}}, 422, "temperature"),
    ({"model": "mistral-small-latest"}, 422, "name"),
])
def test_bad_agents_are_refused_by_name_and_change_nothing(server, body, status, named):
    with server.client() as http:
        before = http.get("/v1/agents", params={"page_size": 1000}).json()
        r = http.post("/v1/agents", json=body)
        assert r.status_code == status, r.text
        assert r.json()["object"] == "error" and named in r.text
        assert http.get("/v1/agents", params={"page_size": 1000}).json() == before


def test_bad_updates_and_references_are_refused(client, server):
    agent = client.beta.agents.create(model="mistral-small-latest", name="steady")
    with server.client() as http:
        cases = [
            (http.patch(f"/v1/agents/{agent.id}", json={"tools": [{"type": "web_search_premium"}]}), 400),
            (http.patch(f"/v1/agents/{agent.id}", json={"handoffs": [agent.id]}), 400),
            (http.patch("/v1/agents/ag_nobody", json={"name": "x"}), 404),
            (http.patch(f"/v1/agents/{agent.id}/version", params={"version": 7}), 404),
            (http.get(f"/v1/agents/{agent.id}", params={"agent_version": "nightly"}), 404),
            (http.put(f"/v1/agents/{agent.id}/aliases", params={"alias": "Bad Alias", "version": 0}), 422),
            (http.put(f"/v1/agents/{agent.id}/aliases", params={"alias": "later", "version": 3}), 404),
            (http.delete(f"/v1/agents/{agent.id}/aliases", params={"alias": "none-such"}), 404),
        ]
        for r, status in cases:
            assert r.status_code == status and r.json()["object"] == "error", r.text
    kept = client.beta.agents.get(agent_id=agent.id)
    assert (kept.versions, kept.tools, kept.handoffs) == ([0], [], None)
    client.beta.agents.delete(agent_id=agent.id)


def test_an_agent_answers_as_its_model_instructions_and_arguments(client, server):
    instructions = "You are a pirate. Answer in one short sentence."
    agent = client.beta.agents.create(model="mistral-small-latest", name="pirate", instructions=instructions,
                                      completion_args={"temperature": 0, "max_tokens": 12})
    question = [{"role": "user", "content": "Who are you?"}]
    with server.client() as http:
        # the same prompt both ways: cache it first so that both find it cached
        http.post("/v1/chat/completions", json={"model": "mistral-small-latest", "temperature": 0, "max_tokens": 1,
                                                "messages": [{"role": "system", "content": instructions}, *question]})
        direct = http.post("/v1/chat/completions", json={
            "model": "mistral-small-latest", "temperature": 0, "max_tokens": 12,
            "messages": [{"role": "system", "content": instructions}, *question]}).json()
        raw = http.post("/v1/agents/completions", json={"agent_id": agent.id, "messages": question})
    assert raw.status_code == 200, raw.text
    assert_valid(raw.json(), "ChatCompletionResponse")
    answer = raw.json()
    assert answer["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
    assert answer["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"]
    assert answer["usage"]["completion_tokens"] <= 12

    res = client.agents.complete(agent_id=agent.id, messages=question, max_tokens=3)  # the request's own wins
    assert res.usage.completion_tokens <= 3 and res.choices[0].message.content
    text = ""
    with client.agents.stream(agent_id=agent.id, messages=question) as events:
        for event in events:
            text += event.data.choices[0].delta.content or ""
    assert text == direct["choices"][0]["message"]["content"]
    client.beta.agents.delete(agent_id=agent.id)
    # metered as any chat completion: one usage record each, billed at the agent's model's price
    billed = usage_rows(sqlite_url(server), endpoint="agents.completions", request_id=raw.headers["x-request-id"])
    assert len(billed) == 1 and billed[0].model == "mistral-small-latest" and billed[0].cost_nano > 0
    assert (billed[0].prompt_tokens, billed[0].completion_tokens) == (
        answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])


def test_an_agents_function_tools_and_tool_choice_apply(client):
    agent = client.beta.agents.create(model="mistral-small-latest", name="caller", tools=[WEATHER],
                                      completion_args={"tool_choice": "any", "temperature": 0})
    res = client.agents.complete(agent_id=agent.id, messages=[{"role": "user", "content": "Weather in Paris?"}])
    calls = res.choices[0].message.tool_calls
    assert res.choices[0].finish_reason == "tool_calls" and calls[0].function.name == "get_weather"
    client.beta.agents.delete(agent_id=agent.id)
    with pytest.raises(mistral_errors.SDKError) as gone:
        client.agents.complete(agent_id=agent.id, messages=[{"role": "user", "content": "Hi"}])
    assert gone.value.status_code == 404
