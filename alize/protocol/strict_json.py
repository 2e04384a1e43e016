"""Strict JSON: NaN and Infinity (which Python's json module accepts and writes) are
refused as invalid JSON, not let through into numbers."""

import json
from typing import Any


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def loads(data: str | bytes) -> Any:
    return json.loads(data, parse_constant=_reject_constant)
