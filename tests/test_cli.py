"""The CLI a newcomer meets: one data dir wherever a command runs, configuration errors in
one line before any model loads, keys by name, output for scripts."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alize.registry import Registry
from tests.server import ROOT


def run(*args: str, cwd: Path, home: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ALIZE_")}
    environ |= {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "alize", *args], capture_output=True, text=True, cwd=cwd,
                          env=environ, timeout=timeout)


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A home and two unrelated working folders."""
    home, a, b = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    for folder in (home, a, b):
        folder.mkdir()
    return home, a, b


def test_commands_run_from_anywhere_share_one_store_and_say_which(place):
    home, a, b = place
    created = run("keys", "create", "--name", "from-a", cwd=a, home=home)
    assert created.returncode == 0, created.stderr
    store = home / ".local" / "share" / "alize" / "alize.db"
    assert f"store: sqlite:///{store}" in created.stderr.replace("\n", "")
    listed = run("keys", "list", "--json", cwd=b, home=home)
    assert [k["name"] for k in map(json.loads, listed.stdout.splitlines())] == ["from-a"]
    assert not (a / "data").exists() and not (b / "data").exists()


def test_an_earlier_versions_data_folder_is_reported_not_ignored(place):
    home, a, _ = place
    (a / "data").mkdir()
    (a / "data" / "alize.db").write_bytes(b"")
    out = run("keys", "list", cwd=a, home=home)
    assert "data dir of earlier versions" in out.stderr and "--data-dir" in out.stderr, out.stderr


def test_keys_by_name_or_prefix_and_ambiguous_names(place):
    home, a, _ = place
    for name in ("app", "twin", "twin"):
        assert run("keys", "create", "--name", name, cwd=a, home=home).returncode == 0
    keys = [json.loads(line) for line in run("keys", "list", "--json", cwd=a, home=home).stdout.splitlines()]
    app = next(k for k in keys if k["name"] == "app")
    rotated = run("keys", "rotate", app["prefix"] + "…", "--grace", "0", cwd=a, home=home)
    assert rotated.returncode == 0 and rotated.stdout.startswith("alz-"), rotated.stderr
    ambiguous = run("keys", "revoke", "twin", cwd=a, home=home)
    assert ambiguous.returncode != 0 and "2 keys" in ambiguous.stderr and "Traceback" not in ambiguous.stderr
    revoked = run("keys", "revoke", "app", cwd=a, home=home)
    assert revoked.returncode == 0 and app["id"] in revoked.stderr
    again = [json.loads(line) for line in run("keys", "list", "--json", cwd=a, home=home).stdout.splitlines()]
    assert next(k for k in again if k["id"] == app["id"])["revoked"] is True


def test_keys_create_refuses_models_the_registry_does_not_serve(place):
    home, a, _ = place
    out = run("keys", "create", "--name", "x", "--models", "mistral-small-latest,gpt-4", cwd=a, home=home)
    assert out.returncode == 2 and "gpt-4" in out.stderr and "mistral-small" not in out.stderr.split("serve")[1]
    ok = run("keys", "create", "--name", "x", "--models", "mistral-large-2411", cwd=a, home=home)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(("content", "needle"), [
    ('[[models]]\nid = "x"\nbackend = "nope"\n', "unknown backend 'nope'"),
    ('[backends.b]\nkind = "chat"\npath = "m.gguf"\ncontext_length = 512\nfavourite = 1\n', "backends.b.favourite"),
    ("this is not toml = [", "not valid TOML"),
    (None, "no such file"),
    ('[backends.b]\nkind = "chat"\npath = "missing.gguf"\ncontext_length = 512\n', "missing.gguf"),
])
def test_a_bad_config_is_one_line_and_exit_2_before_any_model_loads(place, content, needle):
    home, a, _ = place
    config = a / "models.toml"
    if content is not None:
        config.write_text(content)
    started = time.monotonic()
    out = run("serve", "--config", str(config), "--port", "0", cwd=a, home=home)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and str(config) in out.stderr.replace("\n", ""), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 3, out.stderr
    assert time.monotonic() - started < 30


def test_a_busy_port_is_reported_before_any_model_loads(place):
    home, a, _ = place
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run("serve", "--port", str(port), cwd=a, home=home)
    assert out.returncode == 2 and str(port) in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = run("serve", cwd=a, home=home, env={"ALIZE_PORT": "eighty"})
    assert out.returncode == 2 and "ALIZE_PORT" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_users_registry_extends_the_built_in_one(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"")
    config = tmp_path / "models.toml"
    config.write_text('[backends.mine]\nkind = "chat"\npath = "m.gguf"\ncontext_length = 512\n\n'
                      '[[models]]\nid = "my-model"\nbackend = "mine"\n\n'
                      '[[models]]\nid = "mistral-tiny"\nbackend = "mine"\ninput_eur_per_1k_tokens = 1.0\n')
    registry = Registry.load(config)
    assert registry.get("my-model").backend.name == "mine"
    assert registry.get("mistral-tiny").backend.name == "mine"  # same id: the user's wins
    assert registry.get("mistral-small-latest").backend.name == "smollm2-135m-instruct"  # the rest stays
    assert registry.get("mistral-embed").backend.kind == "embedding"
    assert "function_calling" in registry.get("my-model").capabilities
    config.write_text("replace_builtin = true\n" + config.read_text())
    only = Registry.load(config)
    assert {e.id for e in only.entries()} == {"my-model", "mistral-tiny"}
    assert ROOT.exists()
