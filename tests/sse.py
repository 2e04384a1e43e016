"""Reads a server-sent event stream the way the SDKs do."""

import json
from typing import Any

import httpx


def read_events(response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
    """The JSON chunks of a stream, and whether it ended with `data: [DONE]`."""
    chunks: list[dict[str, Any]] = []
    is_done = False
    for line in response.iter_lines():
        if not line.startswith("data: "):
            assert line == "" or line.startswith(":"), f"unexpected SSE line {line!r}"
            continue
        data = line.removeprefix("data: ")
        assert not is_done, "data after [DONE]"
        if data == "[DONE]":
            is_done = True
        else:
            chunks.append(json.loads(data))
    return chunks, is_done


def stream_chat(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]], bool]:
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        if response.status_code != 200:
            response.read()
            return response, [], False
        chunks, is_done = read_events(response)
    return response, chunks, is_done


# The named events of the Conversations API and the spec schema each must validate against.
CONVERSATION_EVENTS = {
    "conversation.response.started": "ResponseStartedEvent", "conversation.response.done": "ResponseDoneEvent",
    "conversation.response.error": "ResponseErrorEvent", "message.output.delta": "MessageOutputEvent",
    "function.call.delta": "FunctionCallEvent", "tool.execution.started": "ToolExecutionStartedEvent",
    "tool.execution.done": "ToolExecutionDoneEvent", "agent.handoff.started": "AgentHandoffStartedEvent",
    "agent.handoff.done": "AgentHandoffDoneEvent"}


def conversation_events(client: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed conversation turn's events (POST /v1/conversations), each checked: its
    `event:` name is its data's type, and the data validates against the spec."""
    from tests.spec import assert_valid

    events, name = [], None
    with client.stream("POST", "/v1/conversations", json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert name is not None and data["type"] == name
                assert_valid(data, CONVERSATION_EVENTS[name])
                events.append(data)
    return events
