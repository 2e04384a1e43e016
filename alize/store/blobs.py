"""Where file bytes live. A small interface, so that an S3-compatible store can be added;
the default is a directory under the data dir, written atomically and checksummed."""

import hashlib
import os
from pathlib import Path
from typing import Protocol


class BlobCorrupted(Exception):
    """The stored bytes do not match their checksum."""


class BlobStore(Protocol):
    def put(self, blob_id: str, data: bytes) -> str: ...  # returns the sha256
    def get(self, blob_id: str, sha256: str) -> bytes: ...
    def delete(self, blob_id: str) -> None: ...


class DirectoryBlobStore:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, blob_id: str) -> Path:
        if not blob_id or "/" in blob_id or blob_id.startswith("."):
            raise ValueError(f"bad blob id {blob_id!r}")
        return self.root / blob_id

    def put(self, blob_id: str, data: bytes) -> str:
        """Writes to a temporary file, syncs it, then renames it into place."""
        path = self._path(blob_id)
        tmp = path.with_name(f".{blob_id}.tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    def get(self, blob_id: str, sha256: str) -> bytes:
        data = self._path(blob_id).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupted(f"file {blob_id} does not match its checksum")
        return data

    def delete(self, blob_id: str) -> None:
        self._path(blob_id).unlink(missing_ok=True)
