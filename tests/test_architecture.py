"""Dependencies point inward (api -> services -> engine/store/protocol); only the runner
imports llama_cpp (the contracts live in pyproject.toml, [tool.importlinter]); ruff is
clean; the engine type-checks under mypy --strict ([tool.mypy])."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_ruff_is_clean():
    ruff = Path(sys.executable).with_name("ruff")
    out = subprocess.run([str(ruff), "check", "alize", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_engine_type_checks_strictly():
    mypy = Path(sys.executable).with_name("mypy")
    out = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True)  # files: pyproject.toml
    assert out.returncode == 0, out.stdout + out.stderr
