"""Where file bytes live. A small interface, so that an S3-compatible store can be added;
the default is a directory under the data dir, written atomically and checksummed.

Bytes are streamed in both directions, a chunk at a time: a 512 MiB upload or download
costs a chunk of memory, not the file."""

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

CHUNK = 1 << 20


class BlobCorrupted(Exception):
    """The stored bytes do not match their checksum."""


class BlobStore(Protocol):
    def put(self, blob_id: str, chunks: Iterable[bytes]) -> str: ...  # returns the sha256
    def verify(self, blob_id: str, sha256: str) -> None: ...
    def chunks(self, blob_id: str) -> Iterator[bytes]: ...
    def delete(self, blob_id: str) -> None: ...


class DirectoryBlobStore:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, blob_id: str) -> Path:
        if not blob_id or "/" in blob_id or blob_id.startswith("."):
            raise ValueError(f"bad blob id {blob_id!r}")
        return self.root / blob_id

    def put(self, blob_id: str, chunks: Iterable[bytes]) -> str:
        """Writes the chunks to a temporary file, hashing as it goes, syncs it, then renames
        it into place. If the chunks fail (too large, the client gone), nothing is left."""
        path = self._path(blob_id)
        tmp = path.with_name(f".{blob_id}.tmp")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()

    def verify(self, blob_id: str, sha256: str) -> None:
        """Raises BlobCorrupted unless the stored bytes hash to `sha256` (read a chunk at a time)."""
        digest = hashlib.sha256()
        for chunk in self.chunks(blob_id):
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise BlobCorrupted(f"file {blob_id} does not match its checksum")

    def chunks(self, blob_id: str) -> Iterator[bytes]:
        with open(self._path(blob_id), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, blob_id: str) -> None:
        self._path(blob_id).unlink(missing_ok=True)
