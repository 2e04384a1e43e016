"""The official TypeScript SDK (@mistralai/mistralai) on Node.js, pointed at Alizé: chat
(whole, streamed, a bad key), then the rest of the platform in one script (tests/ts/platform.mjs),
every answer parsed by the SDK's own schemas."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TS_DIR = Path(__file__).parent / "ts"


def run_script(server, script: str) -> dict:
    if shutil.which("node") is None:
        pytest.fail("Node.js is required for the TypeScript SDK test")
    assert (TS_DIR / "node_modules" / "@mistralai" / "mistralai").exists(), \
        "run scripts/setup.sh test to install the TypeScript SDK"
    out = subprocess.run(["node", script], cwd=TS_DIR, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ALIZE_URL": server.url, "ALIZE_KEY": server.key})
    assert out.returncode == 0, out.stderr
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_chat_complete_and_stream(server):
    result = run_script(server, "chat.mjs")
    assert result["complete"]["content"]
    assert result["complete"]["finishReason"] in ("stop", "length")
    assert result["complete"]["completionTokens"] <= 10
    assert result["stream"]["content"]
    assert result["stream"]["finishReason"] in ("stop", "length")
    assert result["stream"]["completionTokens"] <= 10
    assert result["badKeyStatus"] == 401


def test_the_platform_through_the_typescript_sdk(server):
    result = run_script(server, "platform.mjs")
    failed = {step: r["error"] for step, r in result.items() if "error" in r}
    assert not failed, failed
    assert {"mistral-small-latest", "codestral-latest", "mistral-embed"} <= set(result["models"]["ids"])
    assert result["fim"] == {"finishReason": "length", "completionTokens": 8} and result["fimStream"]["streamed"]
    assert result["tools"]["finishReason"] == "tool_calls" and result["tools"]["name"] == "get_weather"
    assert isinstance(result["tools"]["arguments"]["city"], str)
    assert isinstance(result["tools"]["json"]["answer"], int)  # the schema held
    assert result["embeddings"] == {"count": 2, "dimensions": 384} and result["moderation"] == {"results": 1}
    files = result["files"]
    assert files["listed"] and files["roundTrip"] and files["jobListed"] and files["name"] == "lines.jsonl"
    assert files["signedUrl"] and abs(files["expiresIn"] - 3600) <= 1
    assert set(files["cancelled"]) <= {"CANCELLATION_REQUESTED", "CANCELLED"}
    talk = result["conversations"]
    assert talk["version"] == 1 and talk["outputs"] == [["message.output"], ["message.output"]]
    assert talk["entries"] == ["message.input", "message.output"] * 2 and talk["messages"] == 4
    assert talk["restarted"] and talk["completion"] in ("stop", "length")
    assert talk["events"][0] == "conversation.response.started" and talk["events"][-1] == "conversation.response.done"
    assert set(talk["events"][1:-1]) == {"message.output.delta"}
    shelf = result["libraries"]
    assert shelf["status"] == "done" and shelf["paused"] == ["function.call", "document_library", "pending"]
    assert shelf["resumed"] == ["tool.execution", "message.output"] and shelf["found"] == "pass.md"
