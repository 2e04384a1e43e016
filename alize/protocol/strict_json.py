"""Strict JSON: NaN and Infinity (which Python's json module accepts and writes) are
refused as invalid JSON, not let through into numbers; so is text holding an unpaired
UTF-16 surrogate ("\\ud800" alone), which JSON's escapes allow but is not Unicode text."""

import json
import re
from typing import Any

# Only a \u escape can put a surrogate into parsed JSON (UTF-8 cannot encode one).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def loads(data: str | bytes) -> Any:
    value = json.loads(data, parse_constant=_reject_constant)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start:exc.end].encode("unicode_escape").decode()
            raise json.JSONDecodeError(f"unpaired UTF-16 surrogate {bad} (not Unicode text)",
                                       "", 0) from None
    return value
