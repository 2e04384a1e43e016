"""Model files Alizé derives from others (a GGUF converted or rewritten), written once."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cached(target: Path, write: Callable[[Path], object]) -> Path:
    """`target`, written by `write(path)` unless it exists: into a temporary file beside it,
    then renamed, so that another process never sees half a file (two writing at once
    each write their own, and the last rename wins with the same content)."""
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return target
