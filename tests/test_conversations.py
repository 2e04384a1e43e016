"""Conversations (/v1/conversations) with the official SDK against a real server: started
with a model or an agent, appended, restarted from an entry, listed, read and deleted;
function calls come back as entries and their results continue the run; the SDK's
run_async parses an output_format; streamed events follow the spec; another workspace sees
nothing; bad input is refused and changes nothing; every turn is metered."""

import asyncio
import json

import pytest
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors
from pydantic import BaseModel

from tests.platform_helpers import create_key, sqlite_url, usage_rows
from tests.spec import assert_valid
from tests.sse import conversation_events

ARGS = {"temperature": 0, "max_tokens": 10}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The temperature in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def client(server):
    return Mistral(api_key=server.key, server_url=server.url)


def _post(server, path: str, body: dict, key: str | None = None) -> dict:
    with server.client(key) as http:
        r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    assert_valid(r.json(), "ConversationResponse")
    return r.json()


def test_a_conversation_is_started_appended_restarted_read_and_deleted(server):
    own = create_key(server)  # its usage rows are this test's alone, whatever ran before
    client = Mistral(api_key=own["secret"], server_url=server.url)
    first = _post(server, "/v1/conversations", {"model": "mistral-small-latest", "inputs": "Say hello.",
                                                "completion_args": ARGS, "name": "greetings",
                                                "metadata": {"topic": "hello"}}, key=own["secret"])
    conversation_id = first["conversation_id"]
    assert [o["type"] for o in first["outputs"]] == ["message.output"]
    assert 0 < first["usage"]["completion_tokens"] <= 10

    second = client.beta.conversations.append(conversation_id=conversation_id, inputs="Once more.")
    assert second.conversation_id == conversation_id and second.outputs[0].content

    with server.client(own["secret"]) as http:
        history = http.get(f"/v1/conversations/{conversation_id}/history").json()
        assert_valid(history, "ConversationHistory")
        messages = http.get(f"/v1/conversations/{conversation_id}/messages").json()
        assert_valid(messages, "ConversationMessages")
        info = http.get(f"/v1/conversations/{conversation_id}").json()
        assert_valid(info, "ModelConversation")
    kinds = [(e["type"], e.get("role")) for e in history["entries"]]
    assert kinds == [("message.input", "user"), ("message.output", "assistant")] * 2
    assert history["entries"][0]["content"] == "Say hello."
    assert history["entries"][1]["content"] == first["outputs"][0]["content"]
    assert [m["id"] for m in messages["messages"]] == [e["id"] for e in history["entries"]]
    assert (info["name"], info["metadata"], info["model"]) == ("greetings", {"topic": "hello"}, "mistral-small-latest")

    # restarting from the first answer: a new conversation with the entries up to it, then the new input
    restarted = client.beta.conversations.restart(conversation_id=conversation_id,
                                                  from_entry_id=history["entries"][1]["id"], inputs="Goodbye.")
    assert restarted.conversation_id != conversation_id
    copy = client.beta.conversations.get_history(conversation_id=restarted.conversation_id).entries
    assert [e.content for e in copy[:3]] == ["Say hello.", first["outputs"][0]["content"], "Goodbye."]
    assert len(client.beta.conversations.get_history(conversation_id=conversation_id).entries) == 4  # unchanged

    listed = [c.id for c in client.beta.conversations.list(page_size=100)]
    assert conversation_id in listed and restarted.conversation_id in listed
    assert [c.id for c in client.beta.conversations.list(metadata={"topic": "hello"})][-1] == conversation_id
    client.beta.conversations.delete(conversation_id=conversation_id)
    with pytest.raises(mistral_errors.SDKError) as gone:
        client.beta.conversations.get(conversation_id=conversation_id)
    assert gone.value.status_code == 404

    # one usage record per turn (start, append, restart), at the model's price
    billed = usage_rows(sqlite_url(server), endpoint="conversations", key_id=own["id"])
    assert len(billed) == 3 and all(r.status == 200 and r.cost_nano > 0 for r in billed)


def test_an_agents_conversation_answers_as_the_agent(client, server):
    agent = client.beta.agents.create(model="mistral-small-latest", name="brief", instructions="Answer briefly.",
                                      completion_args=ARGS)
    started = client.beta.conversations.start(agent_id=agent.id, inputs="Who are you?")
    with server.client() as http:
        info = http.get(f"/v1/conversations/{started.conversation_id}").json()
        assert_valid(info, "AgentConversation")
        direct = http.post("/v1/chat/completions", json={
            "model": "mistral-small-latest", **ARGS,
            "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who are you?"}]})
    assert info["agent_id"] == agent.id
    assert started.outputs[0].agent_id == agent.id
    assert started.outputs[0].content == direct.json()["choices"][0]["message"]["content"]
    client.beta.agents.delete(agent_id=agent.id)


def test_function_calls_come_back_as_entries_and_results_continue(client, server):
    start = _post(server, "/v1/conversations", {
        "model": "mistral-small-latest", "inputs": "What is the temperature in Paris?", "tools": [WEATHER],
        "completion_args": {"tool_choice": "any", "temperature": 0, "max_tokens": 40}})
    call = start["outputs"][0]
    assert call["type"] == "function.call" and call["name"] == "get_weather"
    assert isinstance(json.loads(call["arguments"])["city"], str)
    result = {"type": "function.result", "tool_call_id": call["tool_call_id"], "result": "21 degrees Celsius"}
    answer = _post(server, f"/v1/conversations/{start['conversation_id']}", {
        "inputs": [result], "completion_args": {"tool_choice": "none", "max_tokens": 12}})
    assert answer["outputs"][0]["type"] == "message.output"
    entries = client.beta.conversations.get_history(conversation_id=start["conversation_id"]).entries
    assert [e.type for e in entries] == ["message.input", "function.call", "function.result", "message.output"]
    assert entries[2].tool_call_id == call["tool_call_id"]


class City(BaseModel):
    name: str
    country: str


def test_run_async_with_a_local_function_and_an_output_format(client):
    from mistralai.extra.run.context import RunContext

    def population(city: str) -> str:
        """The population of a city."""
        return "2 million"

    async def run():
        async with RunContext(model="mistral-small-latest", output_format=City) as ctx:
            ctx.register_func(population)
            return await client.beta.conversations.run_async(
                run_ctx=ctx, inputs="Name a city in France.", completion_args={"temperature": 0, "max_tokens": 60})

    result = asyncio.run(run())
    assert isinstance(result.output_as_model, City) and result.output_as_model.name
    assert result.conversation_id and result.output_entries[-1].type == "message.output"


def test_streamed_turns_send_the_spec_events_and_store_the_answer(client, server):
    with server.client() as http:
        events = conversation_events(http, {"model": "mistral-small-latest", "inputs": "Count to three.",
                                            "completion_args": ARGS})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "conversation.response.started" and kinds[-1] == "conversation.response.done"
    assert set(kinds[1:-1]) == {"message.output.delta"}
    text = "".join(e["content"] for e in events[1:-1])
    conversation_id = events[0]["conversation_id"]
    stored = client.beta.conversations.get_history(conversation_id=conversation_id).entries
    assert stored[-1].content == text and events[-1]["usage"]["completion_tokens"] <= 10

    seen = []
    with client.beta.conversations.append_stream(conversation_id=conversation_id, inputs="Again.") as stream:
        for event in stream:
            seen.append(event.event)
    assert seen[0] == "conversation.response.started" and seen[-1] == "conversation.response.done"


def test_another_workspace_cannot_see_or_continue_a_conversation(client, server):
    with server.client(server.admin_key) as admin:
        admin.post("/admin/v1/workspaces", json={"name": "conversations-other"})
    other = create_key(server, workspace="conversations-other")
    mine = client.beta.conversations.start(model="mistral-small-latest", inputs="Hi", completion_args=ARGS)
    with server.client(other["secret"]) as theirs:
        assert mine.conversation_id not in [c["id"] for c in theirs.get("/v1/conversations").json()]
        cid = mine.conversation_id
        for r in (theirs.get(f"/v1/conversations/{cid}"), theirs.get(f"/v1/conversations/{cid}/history"),
                  theirs.get(f"/v1/conversations/{cid}/messages"), theirs.delete(f"/v1/conversations/{cid}"),
                  theirs.post(f"/v1/conversations/{cid}", json={"inputs": "Hi"}),
                  theirs.post(f"/v1/conversations/{cid}/restart", json={"inputs": "Hi", "from_entry_id": "x"})):
            assert r.status_code == 404 and r.json()["object"] == "error", r.text
    assert len(client.beta.conversations.get_history(conversation_id=mine.conversation_id).entries) == 2


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/v1/conversations", {"inputs": "Hi"}, 400, "agent_id or a model"),
    ("/v1/conversations", {"inputs": "Hi", "model": "mistral-small-latest", "agent_id": "ag_x"}, 400, "not both"),
    ("/v1/conversations", {"inputs": "Hi", "agent_id": "ag_nobody"}, 404, "ag_nobody"),
    ("/v1/conversations", {"inputs": "Hi", "model": "no-such-model"}, 404, "no-such-model"),
    ("/v1/conversations", {"inputs": "Hi", "model": "mistral-small-latest", "tools": [{"type": "web_search"}]},
     400, "web_search"),
    ("/v1/conversations", {"inputs": [], "model": "mistral-small-latest"}, 400, "inputs"),
    ("/v1/conversations", {"inputs": [{"type": "tool.execution", "name": "x"}], "model": "mistral-small-latest"},
     400, "tool.execution"),
    ("/v1/conversations", {"inputs": [{"role": "system", "content": "x"}], "model": "mistral-small-latest"},
     400, "role"),
    ("/v1/conversations/conv_nobody", {"inputs": "Hi"}, 404, "conv_nobody"),
    ("/v1/conversations", {"inputs": "Hi", "agent_id": "ag_x", "tools": [WEATHER]}, 400, "from the agent"),
])
def test_bad_conversations_are_refused_and_change_nothing(server, path, body, status, named):
    with server.client() as http:
        before = http.get("/v1/conversations", params={"page_size": 1000}).json()
        r = http.post(path, json=body)
        assert r.status_code == status, r.text
        assert r.json()["object"] == "error" and named in r.text
        assert http.get("/v1/conversations", params={"page_size": 1000}).json() == before


def test_entry_ids_are_the_servers_whatever_the_client_sends(server):
    given = [{"type": "message.input", "role": "user", "content": "Hi", "id": "msg_mine"}]
    ids = [_post(server, "/v1/conversations", {"model": "mistral-small-latest", "inputs": given,
                                               "completion_args": ARGS})["conversation_id"] for _ in range(2)]
    with server.client() as http:
        for conversation_id in ids:
            entry = http.get(f"/v1/conversations/{conversation_id}/history").json()["entries"][0]
            assert entry["id"].startswith("msg_") and entry["id"] != "msg_mine"


def test_restarting_from_an_entry_that_is_not_there_is_a_404(client, server):
    mine = client.beta.conversations.start(model="mistral-small-latest", inputs="Hi", completion_args=ARGS)
    with server.client() as http:
        r = http.post(f"/v1/conversations/{mine.conversation_id}/restart",
                      json={"inputs": "Hi", "from_entry_id": "msg_nowhere"})
    assert r.status_code == 404 and r.json()["param"] == "from_entry_id"


def _handoff_pair(client, name: str):
    """A triage agent whose model must call a tool, its only one being the handoff, and the
    expert it hands to."""
    expert = client.beta.agents.create(model="mistral-small-latest", name=f"{name} expert", completion_args=ARGS,
                                       description="Answers questions about mountains.")
    triage = client.beta.agents.create(model="mistral-small-latest", name=f"{name} triage", handoffs=[expert.id],
                                       completion_args={"temperature": 0, "max_tokens": 100, "tool_choice": "any"})
    return triage, expert


def test_a_handoff_runs_the_next_agent_on_the_server(client, server):
    triage, expert = _handoff_pair(client, "server")
    with server.client() as http:
        r = http.post("/v1/conversations", json={"agent_id": triage.id, "inputs": "How high is Mont Blanc?"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert_valid(answer, "ConversationResponse")
    handoff, message = answer["outputs"]
    assert handoff["type"] == "agent.handoff"
    assert (handoff["previous_agent_id"], handoff["next_agent_id"]) == (triage.id, expert.id)
    assert handoff["next_agent_name"] == "server expert"
    assert message["type"] == "message.output" and message["agent_id"] == expert.id and message["content"]
    billed = usage_rows(sqlite_url(server), endpoint="conversations", request_id=r.headers["x-request-id"])
    assert len(billed) == 2  # each agent's model call
    assert answer["usage"]["prompt_tokens"] == sum(b.prompt_tokens for b in billed)
    history = client.beta.conversations.get_history(conversation_id=answer["conversation_id"]).entries
    assert [e.type for e in history] == ["message.input", "agent.handoff", "message.output"]
    assert client.beta.conversations.get(conversation_id=answer["conversation_id"]).agent_id == triage.id

    with server.client() as http:
        events = conversation_events(http, {"agent_id": triage.id, "inputs": "And the Matterhorn?"})
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["conversation.response.started", "agent.handoff.started", "agent.handoff.done"]
    assert events[2]["next_agent_id"] == expert.id and kinds[-1] == "conversation.response.done"
    assert {e["agent_id"] for e in events[3:-1]} == {expert.id} and all(e["output_index"] == 1 for e in events[3:-1])
    for agent in (triage, expert):
        client.beta.agents.delete(agent_id=agent.id)


def test_a_client_run_handoff_comes_back_as_a_function_call(client):
    triage, expert = _handoff_pair(client, "client")
    answer = client.beta.conversations.start(agent_id=triage.id, inputs="Hello", handoff_execution="client")
    assert answer.outputs and {(o.type, o.name) for o in answer.outputs} == {("function.call",
                                                                               "transfer_to_client_expert")}
    for agent in (triage, expert):
        client.beta.agents.delete(agent_id=agent.id)


def test_agents_handing_off_to_each_other_stop_after_three_handoffs(client):
    first = client.beta.agents.create(model="mistral-small-latest", name="ping",
                                      completion_args={"temperature": 0, "max_tokens": 100, "tool_choice": "any"})
    second = client.beta.agents.create(model="mistral-small-latest", name="pong", handoffs=[first.id],
                                       completion_args={"temperature": 0, "max_tokens": 100, "tool_choice": "any"})
    client.beta.agents.update(agent_id=first.id, handoffs=[second.id])
    answer = client.beta.conversations.start(agent_id=first.id, inputs="Hello")
    assert [o.type for o in answer.outputs][:4] == ["agent.handoff"] * 3 + ["function.call"]
    assert [o.next_agent_id for o in answer.outputs[:3]] == [second.id, first.id, second.id]
    for agent in (first, second):
        client.beta.agents.delete(agent_id=agent.id)
