"""The official TypeScript SDK (@mistralai/mistralai) on Node.js, pointed at Alizé."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TS_DIR = Path(__file__).parent / "ts"


def test_chat_complete_and_stream(server):
    if shutil.which("node") is None:
        pytest.fail("Node.js is required for the TypeScript SDK test")
    assert (TS_DIR / "node_modules" / "@mistralai" / "mistralai").exists(), \
        "run scripts/setup.sh test to install the TypeScript SDK"
    out = subprocess.run(["node", "chat.mjs"], cwd=TS_DIR, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ALIZE_URL": server.url, "ALIZE_KEY": server.key})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["complete"]["content"]
    assert result["complete"]["finishReason"] in ("stop", "length")
    assert result["complete"]["completionTokens"] <= 10
    assert result["stream"]["content"]
    assert result["stream"]["finishReason"] in ("stop", "length")
    assert result["stream"]["completionTokens"] <= 10
    assert result["badKeyStatus"] == 401
