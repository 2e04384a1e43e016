"""Prompts the way each model expects them: Mistral's own format (mistral-common) for a
Mistral-family model, a chat template that knows tools (Hermes/Qwen's <tool_call>), and the
generic convention for the others (test_tools.py) - with the grammar holding in each."""

import json
import shutil
from pathlib import Path

import pytest
from mistralai.client import Mistral

from alize.engine.chat_template import ChatTemplate
from alize.protocol.chat import ChatCompletionRequest
from alize.services.prompts import conversation
from tests.server import start_server
from tests.toy_models import V3_TOKENIZER, write_mistral_toy

DATA = Path(__file__).parent / "data"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Lyon"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Lyon"]}},
                   "required": ["city"], "additionalProperties": False}}}


def registry(tmp_path: Path, backend: str) -> dict[str, str]:
    config = tmp_path / "models.toml"
    config.write_text(backend)
    return {"ALIZE_CONFIG_FILE": str(config), "ALIZE_PARALLEL": "2"}


@pytest.fixture(scope="module")
def mistral_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mistral-toy")
    model = write_mistral_toy(tmp / "mistral-toy.gguf")
    env = registry(tmp, f'[backends.toy]\nkind = "chat"\npath = "{model}"\ncontext_length = 1024\n\n'
                        '[[models]]\nid = "toy-mistral"\nbackend = "toy"\n')
    server = start_server(tmp / "data", env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hermes_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hermes")
    shutil.copy(DATA / "hermes_tools.jinja", tmp / "hermes_tools.jinja")
    env = registry(tmp, '[backends.smollm2]\nkind = "chat"\npath = "builtin:smollm2"\ncontext_length = 4096\n'
                        'chat_template = "hermes_tools.jinja"\n\n'
                        '[[models]]\nid = "smol-hermes"\nbackend = "smollm2"\n')
    server = start_server(tmp / "data", env=env)
    yield server
    server.stop()


def mistral_common_prompt(messages, tools) -> list[int]:
    """What Mistral's own library makes of a conversation (the reference)."""
    import mistral_common
    from mistral_common.protocol.instruct.request import ChatCompletionRequest as MistralRequest
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    tokenizer = MistralTokenizer.from_file(str(Path(mistral_common.__file__).parent / "data" / V3_TOKENIZER))
    request = MistralRequest.model_validate({"messages": messages, "tools": tools})
    return tokenizer.encode_chat_completion(request).tokens


def test_a_mistral_family_model_gets_mistral_common_prompts_and_tool_calls(mistral_server):
    client = Mistral(api_key=mistral_server.key, server_url=mistral_server.url)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
    # (the toy's random weights would chain parallel calls until max_tokens: one call it is)
    r = client.chat.complete(model="toy-mistral", messages=messages, tools=[WEATHER, TIME], tool_choice="any",
                             parallel_tool_calls=False, max_tokens=64, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name in ("get_weather", "get_time") and len(call.id) == 9
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Lyon")
    assert r.usage.prompt_tokens == len(mistral_common_prompt(messages, [WEATHER, TIME]))
    # the answer to the call, with the id the SDK would send for a call it did not name
    history = [*messages, {"role": "assistant", "content": "", "tool_calls": [
                   {"id": call.id, "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
               {"role": "tool", "content": "22C and sunny", "tool_call_id": call.id, "name": call.function.name}]
    second = client.chat.complete(model="toy-mistral", messages=history, tools=[WEATHER, TIME],
                                  tool_choice="none", max_tokens=4, temperature=0)
    reference = [*messages, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "function": {"name": call.function.name, "arguments": json.loads(call.function.arguments)}}]},
        {"role": "tool", "content": "22C and sunny", "tool_call_id": call.id, "name": call.function.name}]
    assert second.usage.prompt_tokens == len(mistral_common_prompt(reference, None))  # tool_choice none: no tools


def test_mistral_tool_calls_stream_whole(mistral_server):
    client = Mistral(api_key=mistral_server.key, server_url=mistral_server.url)
    deltas = [c.data.choices[0] for c in client.chat.stream(
        model="toy-mistral", messages=[{"role": "user", "content": "Weather in Lyon?"}], tools=[WEATHER],
        tool_choice="any", parallel_tool_calls=False, max_tokens=64, temperature=0)]
    with_calls = [d for d in deltas if d.delta.tool_calls]
    assert len(with_calls) == 1 and with_calls[0].finish_reason == "tool_calls"
    assert json.loads(with_calls[0].delta.tool_calls[0].function.arguments)["city"] in ("Paris", "Lyon")


def test_a_template_that_knows_tools_presents_them_and_is_answered_in_its_format(hermes_server):
    client = Mistral(api_key=hermes_server.key, server_url=hermes_server.url)
    messages = [{"role": "user", "content": "What is the weather in Paris, and the time in Lyon?"}]
    r = client.chat.complete(model="smol-hermes", messages=messages, tools=[WEATHER, TIME], tool_choice="any",
                             max_tokens=80, temperature=0)
    assert r.choices[0].finish_reason == "tool_calls", r.choices[0]
    calls = r.choices[0].message.tool_calls
    assert all(c.function.name in ("get_weather", "get_time") for c in calls)
    history = [*messages, {"role": "assistant", "content": "", "tool_calls": [
        {"id": c.id, "function": {"name": c.function.name, "arguments": c.function.arguments}} for c in calls]}]
    history += [{"role": "tool", "content": "22C", "tool_call_id": c.id, "name": c.function.name} for c in calls]
    final = client.chat.complete(model="smol-hermes", messages=history, tools=[WEATHER, TIME], max_tokens=12,
                                 temperature=0)
    assert final.choices[0].finish_reason in ("stop", "length", "tool_calls")
    streamed = [c.data.choices[0] for c in client.chat.stream(
        model="smol-hermes", messages=messages, tools=[WEATHER], tool_choice="any", max_tokens=48, temperature=0)]
    assert [d.finish_reason for d in streamed if d.delta.tool_calls] == ["tool_calls"]


def test_template_tool_styles_are_recognised():
    hermes = ChatTemplate((DATA / "hermes_tools.jinja").read_text())
    assert hermes.tool_style == "hermes"
    assert ChatTemplate(None).tool_style is None  # ChatML: no tools
    mistral = "{% if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}{% endif %}{% for m in messages %}[TOOL_CALLS]{% endfor %}"
    assert ChatTemplate(mistral).tool_style == "mistral"
    other = "{% if tools %}<|python_tag|>{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    assert ChatTemplate(other).tool_style is None  # knows tools, but not a style Alizé can parse


def test_the_hermes_prompt_carries_the_tools_and_the_history_in_its_format():
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "null", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "content": "22C"}]})
    messages, _ = conversation(request)
    call_id = messages[1]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and messages[2]["tool_call_id"] == call_id  # "null" given an id, and answered
    prompt = ChatTemplate((DATA / "hermes_tools.jinja").read_text()).render(messages, tools=[WEATHER])
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<tool_response>\n22C\n</tool_response>" in prompt

