"""The Files API as a use case: upload, list, fetch, delete, within the caller's workspace."""

import asyncio
import logging
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from alize.errors import InvalidRequest, NotFound, PayloadTooLarge, StorageError
from alize.store import files as file_store
from alize.store.accounts import hash_secret
from alize.store.blobs import CHUNK, BlobCorrupted, BlobStore
from alize.store.db import Database
from alize.store.files import FileFilter, FileInfo, FilePage

PURPOSES = ("batch", "fine-tune", "ocr")
MAX_EXPIRY_HOURS = 24 * 366 * 10  # an upload's `expiry`: ten years at most
LINK_HOURS = (1, 168)  # a signed URL's `expiry`, as Mistral's
SWEEP_S = 60.0  # how often expired files are deleted

log = logging.getLogger(__name__)


class FileService:
    def __init__(self, db: Database, blobs: BlobStore, max_bytes: int):
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes

    async def upload(self, workspace_id: str, filename: str, purpose: str, source: BinaryIO,
                     mimetype: str | None, expiry_hours: int | None = None) -> FileInfo:
        """Stores the bytes read from `source` (a file object), a chunk at a time; with
        `expiry_hours`, the file is gone that many hours after its upload."""
        if purpose not in PURPOSES:
            raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}", param="purpose")
        if not filename:
            raise InvalidRequest("the file part needs a filename", param="file")
        if expiry_hours is not None and not 1 <= expiry_hours <= MAX_EXPIRY_HOURS:
            raise InvalidRequest(f"expiry is a number of hours from 1 to {MAX_EXPIRY_HOURS}", param="expiry")
        file_id = str(uuid.uuid4())
        counted = _Counted(source, self.max_bytes)
        sha256 = await asyncio.to_thread(self.blobs.put, file_id, counted)
        now = datetime.now(UTC)
        info = FileInfo(file_id, workspace_id, filename[:500], purpose,
                        "batch_request" if purpose == "batch" else "instruct", "upload", counted.size, sha256,
                        counted.lines if purpose == "batch" else None, mimetype, now,
                        None if expiry_hours is None else now + timedelta(hours=expiry_hours))
        try:
            await asyncio.to_thread(file_store.add, self.db, info)
        except Exception:
            await asyncio.to_thread(self.blobs.delete, file_id)  # no orphan bytes
            raise
        return info

    async def produce(self, workspace_id: str, file_id: str, filename: str, sample_type: str,
                      lines: list[str]) -> FileInfo:
        """Writes the bytes of a file Alizé produces (a batch job's results) and returns its
        record, for the caller to add in its own transaction."""
        data = "".join(f"{line}\n" for line in lines).encode()
        sha256 = await asyncio.to_thread(self.blobs.put, file_id, [data])
        return FileInfo(file_id, workspace_id, filename, "batch", sample_type, "mistral", len(data), sha256,
                        len(lines), "application/jsonl", datetime.now(UTC))

    def get(self, workspace_id: str, file_id: str) -> FileInfo:
        info = file_store.get(self.db, workspace_id, file_id)
        if info is None:
            raise NotFound(f"No file with id {file_id}")
        return info

    def list(self, workspace_id: str, page: int, page_size: int, purpose: str | None, search: str | None,
             where: FileFilter | None = None, after: str | None = None, ascending: bool = False) -> FilePage:
        """A page of the workspace's files (`after`: OpenAI's cursor, the id of the last file seen)."""
        try:
            return file_store.list_page(self.db, workspace_id, page, page_size, purpose, search, where, after,
                                        ascending)
        except file_store.UnknownCursor:
            raise InvalidRequest(f"after: no file with id {after} is listed here", param="after") from None

    def open_content(self, workspace_id: str, file_id: str) -> tuple[FileInfo, Iterator[bytes]]:
        """The file's record and its bytes as chunks, once they are checked against their
        checksum (so that damage is a clear error before any byte is sent)."""
        info = self.get(workspace_id, file_id)
        try:
            self.blobs.verify(info.id, info.sha256)
        except (BlobCorrupted, FileNotFoundError) as exc:
            raise StorageError(f"The bytes of file {file_id} are damaged or missing") from exc
        return info, self.blobs.chunks(info.id)

    def content(self, workspace_id: str, file_id: str) -> bytes:
        return b"".join(self.open_content(workspace_id, file_id)[1])

    def delete(self, workspace_id: str, file_id: str) -> None:
        if not file_store.remove(self.db, workspace_id, file_id):
            raise NotFound(f"No file with id {file_id}")
        self.blobs.delete(file_id)

    # -- signed URLs ------------------------------------------------------------------------
    def signed_url(self, workspace_id: str, file_id: str, hours: int, base_url: str) -> str:
        """A link to the file's bytes that anyone with it may read for `hours` (or until the
        file expires or is deleted); only its token's hash is kept."""
        if not LINK_HOURS[0] <= hours <= LINK_HOURS[1]:
            raise InvalidRequest(f"expiry is a number of hours from {LINK_HOURS[0]} to {LINK_HOURS[1]}",
                                 param="expiry")
        token = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + timedelta(hours=hours)
        if not file_store.add_link(self.db, workspace_id, file_id, hash_secret(token), expires_at):
            raise NotFound(f"No file with id {file_id}")
        return f"{base_url.rstrip('/')}/v1/file-links/{token}"

    def follow(self, token: str) -> tuple[FileInfo, Iterator[bytes]]:
        """The file a signed link leads to, and its checked bytes."""
        info = file_store.follow_link(self.db, hash_secret(token), datetime.now(UTC))
        if info is None:
            raise NotFound("This link is unknown or has expired")
        return self.open_content(info.workspace_id, info.id)

    # -- expiry -----------------------------------------------------------------------------
    def sweep(self) -> int:
        """Deletes the files past their expiry date (and their bytes), and expired links."""
        ids = file_store.expired(self.db, datetime.now(UTC))
        for file_id in ids:
            self.blobs.delete(file_id)
        return len(ids)

    async def run(self) -> None:
        """Sweeps every SWEEP_S until cancelled; a failure is logged and tried again."""
        while True:
            try:
                if swept := await asyncio.to_thread(self.sweep):
                    log.info("deleted %d expired file(s)", swept)
            except Exception:
                log.exception("the expired files' sweep failed; trying again in %g s", SWEEP_S)
            await asyncio.sleep(SWEEP_S)


async def counted_put(blobs: BlobStore, blob_id: str, source: BinaryIO, max_bytes: int) -> tuple[int, str]:
    """Stores a file object's bytes as a blob, a chunk at a time; past `max_bytes` a 413 and
    nothing stored. Returns (size, sha256)."""
    counted = _Counted(source, max_bytes)
    sha256 = await asyncio.to_thread(blobs.put, blob_id, counted)
    return counted.size, sha256


class _Counted:
    """A file object's chunks, counted (bytes, lines) as they pass; past `max_bytes` it
    raises PayloadTooLarge, which leaves nothing stored."""

    def __init__(self, source: BinaryIO, max_bytes: int):
        self.source, self.max_bytes = source, max_bytes
        self.size = self.lines = 0

    def __iter__(self) -> Iterator[bytes]:
        last = b"\n"
        while chunk := self.source.read(CHUNK):
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(f"The file is larger than {self.max_bytes} bytes")
            self.lines += chunk.count(b"\n")
            last = chunk[-1:]
            yield chunk
        if last != b"\n":
            self.lines += 1  # a last line without its newline
