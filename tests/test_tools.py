"""Function calling with the official SDK: calls forced or chosen, run, answered."""

import json
import re

import jsonschema
import pytest
from mistralai.client import Mistral

MODEL = "mistral-small-latest"
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                      "parameters": CITY}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                      "parameters": CITY}},
]
WEATHER = {"Oslo": "snow, -3 C", "Lima": "sunny, 24 C", "Paris": "rain, 11 C", "Rome": "clear, 17 C"}
# One earlier exchange with two parallel calls, which the model follows.
HISTORY = [
    {"role": "user", "content": "What is the weather in Oslo and in Lima?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "f5g6h7i8j", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'}},
    ]},
    {"role": "tool", "tool_call_id": "a1b2c3d4e", "name": "get_weather", "content": WEATHER["Oslo"]},
    {"role": "tool", "tool_call_id": "f5g6h7i8j", "name": "get_weather", "content": WEATHER["Lima"]},
    {"role": "assistant", "content": "Oslo: snow, -3 C. Lima: sunny, 24 C."},
]
QUESTION = {"role": "user", "content": "What is the weather in Paris and in Rome?"}


def _check_calls(calls) -> None:
    assert calls
    for call in calls:
        assert re.fullmatch(r"[a-zA-Z0-9]{9}", call.id)
        assert call.function.name in ("get_weather", "get_time")
        jsonschema.validate(json.loads(call.function.arguments), CITY)


def _results(calls) -> list[dict]:
    return [{"role": "tool", "tool_call_id": c.id, "name": c.function.name,
             "content": WEATHER.get(json.loads(c.function.arguments)["city"], "unknown")} for c in calls]


def test_two_turn_conversation_with_parallel_calls(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    messages = [*HISTORY, QUESTION]
    first = client.chat.complete(model=MODEL, messages=messages, tools=TOOLS, tool_choice="any", temperature=0,
                                 max_tokens=120)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == ""
    calls = choice.message.tool_calls
    _check_calls(calls)
    assert len(calls) == 2 and {json.loads(c.function.arguments)["city"] for c in calls} == {"Paris", "Rome"}
    messages += [{"role": "assistant", "content": "", "tool_calls": [c.model_dump() for c in calls]}, *_results(calls)]
    final = client.chat.complete(model=MODEL, messages=messages, tools=TOOLS, tool_choice="none", temperature=0,
                                 max_tokens=40)
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_streamed_conversation_sends_each_call_whole(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    messages = [*HISTORY, QUESTION]
    calls, reasons, text = [], [], ""
    for event in client.chat.stream(model=MODEL, messages=messages, tools=TOOLS, tool_choice="any", temperature=0,
                                    max_tokens=120):
        for choice in event.data.choices:
            calls += choice.delta.tool_calls or []
            text += choice.delta.content or "" if isinstance(choice.delta.content, str | None) else ""
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert reasons == ["tool_calls"] and text == ""
    _check_calls(calls)  # each one complete, with its arguments
    messages += [{"role": "assistant", "content": "", "tool_calls": [c.model_dump() for c in calls]}, *_results(calls)]
    answer = ""
    for event in client.chat.stream(model=MODEL, messages=messages, tools=TOOLS, temperature=0, max_tokens=40):
        for choice in event.data.choices:
            assert not choice.delta.tool_calls or choice.finish_reason == "tool_calls"
            answer += choice.delta.content or ""
    assert answer.strip()


def test_named_choice_and_no_parallel_calls(http):
    body = {"model": MODEL, "messages": [*HISTORY, QUESTION], "tools": TOOLS, "temperature": 0, "max_tokens": 120,
            "tool_choice": {"type": "function", "function": {"name": "get_time"}}, "parallel_tool_calls": False}
    answer = http.post("/v1/chat/completions", json=body).json()
    calls = answer["choices"][0]["message"]["tool_calls"]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert len(calls) == 1 and calls[0]["function"]["name"] == "get_time"


def test_auto_lets_the_model_answer_in_text(http):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "tools": TOOLS,
            "temperature": 0, "max_tokens": 20}
    choice = http.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] in ("stop", "length", "tool_calls")
    if choice["finish_reason"] != "tool_calls":
        assert choice["message"]["content"] and not choice["message"]["tool_calls"]


@pytest.mark.parametrize("tool_choice", ["auto", "any", "none"])
def test_tools_with_a_response_format_give_calls_or_an_answer_that_follows_it(http, tool_choice):
    # what the SDK's RunContext sends with registered functions and an output_format
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "sunny": {"type": "boolean"}}, "required": ["city", "sunny"]}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Is it sunny in Rome?"}], "tools": TOOLS,
            "tool_choice": tool_choice, "temperature": 0, "max_tokens": 60,
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}}}
    choice = http.post("/v1/chat/completions", json=body).json()["choices"][0]
    if tool_choice == "any":
        assert choice["finish_reason"] == "tool_calls"
    if choice["finish_reason"] == "tool_calls":
        assert tool_choice != "none" and choice["message"]["tool_calls"]
    else:
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_tools_with_a_response_format_whose_answer_is_no_object_are_refused(http):
    body = {"model": MODEL, "messages": [QUESTION], "tools": TOOLS, "max_tokens": 5, "response_format": {
        "type": "json_schema", "json_schema": {"name": "list", "schema": {"type": "array", "items": {"type": "string"}}}}}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and "must be of type object" in r.json()["message"]


@pytest.mark.parametrize(("change", "status", "needle"), [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, 400, "nope"),
    ({"tools": [{"type": "function", "function": {"parameters": CITY}}]}, 400, "name"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": "wrong"}}}]}, 400, "JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "x", "strict": True, "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}]}, 400, "multipleOf"),
    ({"tools": None, "tool_choice": "any"}, 400, "tool_choice"),
    ({"messages": [*HISTORY[:4], {"role": "user", "content": "hi"}]}, 400, "after role 'tool'"),
    ({"messages": [HISTORY[0], {**HISTORY[1], "tool_calls": [{"id": "bad-id", "type": "function", "function": {
        "name": "get_weather", "arguments": "{}"}}]}, {**HISTORY[2], "tool_call_id": "bad-id"}]}, 400, "3280"),
])
def test_bad_tools_and_histories_are_4xx(http, change, status, needle):
    body = {"model": MODEL, "messages": [QUESTION], "tools": TOOLS, "max_tokens": 5, **change}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert needle in r.text


BOUNDED = {"type": "object", "properties": {"nights": {"type": "integer", "minimum": 1, "maximum": 7},
                                           "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 500},
                                           "email": {"type": "string", "format": "email"}},
           "required": ["nights", "price", "email"], "additionalProperties": False}


@pytest.mark.parametrize("strict", [False, True])
def test_bounded_and_formatted_parameters_are_enforced(http, strict):
    tools = [{"type": "function", "function": {"name": "book", "description": "Book a hotel", "strict": strict,
                                               "parameters": BOUNDED}}]
    for temperature in (0, 1.0):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Book a hotel for me."}], "tools": tools,
                "tool_choice": "any", "temperature": temperature, "max_tokens": 300}
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls", choice
        for call in choice["message"]["tool_calls"]:
            arguments = json.loads(call["function"]["arguments"])
            jsonschema.validate(arguments, BOUNDED)
            assert "@" in arguments["email"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_call_cut_by_max_tokens_leaks_no_call_syntax(http, stream):
    body = {"model": MODEL, "messages": [*HISTORY, QUESTION], "tools": TOOLS, "tool_choice": "any",
            "temperature": 0, "max_tokens": 3, "stream": stream}
    if not stream:
        choice = http.post("/v1/chat/completions", json=body).json()["choices"][0]
        content, reason, calls = choice["message"]["content"], choice["finish_reason"], choice["message"]["tool_calls"]
    else:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        reason = chunks[-1]["choices"][0]["finish_reason"]
        calls = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert reason == "length"
    assert not content and not calls, (content, calls)


def test_openai_sdk_sees_tool_calls(server):
    from openai import OpenAI

    client = OpenAI(api_key=server.key, base_url=server.v1)
    res = client.chat.completions.create(model=MODEL, messages=[*HISTORY, QUESTION], tools=TOOLS,
                                         tool_choice="required", temperature=0, max_tokens=120)
    assert res.choices[0].finish_reason == "tool_calls"
    for call in res.choices[0].message.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), CITY)
