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
