"""Turns uploaded documents into searchable chunks, in the background: claim a document
(a lease, so that a server that dies leaves it to the next), read its text, cut it into
chunks that fit the embedding model, embed them, and store the chunks together with the
usage record of embedding them, billed to the key that uploaded it: a document is billed
once, when its chunks are stored. A key over its limits leaves the document
waiting_for_capacity until they allow it; a key revoked since, or a document that cannot
be read, ends in error with the reason."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import numpy as np

from alize.engine.params import BACKGROUND
from alize.errors import AlizeError, TooManyRequests, Unauthorized
from alize.services.auth import check_usable
from alize.services.document_text import DEFAULT_CHUNK, UnreadableDocument, extract, split
from alize.services.metering import Call, Meter
from alize.services.models import ModelHub
from alize.store import libraries as store
from alize.store import vectors
from alize.store.accounts import AccountError, get_key
from alize.store.blobs import BlobStore
from alize.store.db import Database
from alize.store.libraries import DocumentRecord

log = logging.getLogger("alize.libraries")
ENDPOINT = "libraries"
LEASE = timedelta(minutes=10)
SLICE = 256  # chunks embedded at a time
IDLE_S = 2.0
SWEEP_S = 60.0


class DocumentWorker:
    def __init__(self, db: Database, blobs: BlobStore, hub: ModelHub, meter: Meter, model_id: str, holder: str,
                 pgvector: bool = False):
        self.db = db
        self.pgvector = pgvector  # the chunks' embedding column too (store/vectors.py)
        self.holder = holder  # this server, as the batch worker names it: restarted, it resumes its own
        self.blobs = blobs
        self.hub = hub
        self.meter = meter
        self.model_id = model_id  # the embedding model of every library
        self._wake = asyncio.Event()
        self._swept = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        resumed = await asyncio.to_thread(store.release, self.db, self.holder)
        if resumed:
            log.info("%d documents this server was processing when it stopped are processed again", resumed)
        while True:
            try:
                if not await self.step():
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), IDLE_S)
                    except TimeoutError:
                        pass
            except Exception:
                log.exception("the document worker failed; trying again in %.0f s", IDLE_S)
                await asyncio.sleep(IDLE_S)

    async def step(self) -> bool:
        """Processes one waiting document; says whether there was one."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._swept > SWEEP_S:
            self._swept = loop.time()
            for document_id in await asyncio.to_thread(store.expired, self.db, datetime.now(UTC)):
                await asyncio.to_thread(self.blobs.delete, document_id)
        now = datetime.now(UTC)
        document = await asyncio.to_thread(store.claim, self.db, self.holder, now, now + LEASE)
        if document is None:
            return False
        try:
            await self.process(document, now + LEASE)
        except asyncio.CancelledError:  # the server stops: the document is given back for the next one at once
            await asyncio.to_thread(store.release, self.db, self.holder)
            raise
        except Exception as exc:  # not the document's fault, but retrying it would fail the same way
            log.exception("processing document %s failed", document.id)
            await self._status(document, now + LEASE, "error", f"processing failed ({type(exc).__name__}); "
                               "reprocess it once the server's log says why")
        return True

    async def process(self, document: DocumentRecord, lease: datetime) -> None:
        try:
            key = check_usable(await asyncio.to_thread(get_key, self.db, document.key_id))
            data = await asyncio.to_thread(lambda: b"".join(self.blobs.chunks(document.id)))
            text, pages = await asyncio.to_thread(extract, data, document.mime_type or "text/plain")
            size = await asyncio.to_thread(store.chunk_size, self.db, document.library_id)
            chunks, tokens = await asyncio.to_thread(self._chunks, text, size or DEFAULT_CHUNK)
            call = Call(self.meter, ENDPOINT, key=key, priority=BACKGROUND, held=True)
            entry, embedder = self.hub.embedder(self.model_id)
            await call.admit(entry, sum(map(len, tokens)), 0)
        except TooManyRequests as exc:
            wait = int(exc.headers.get("Retry-After", "30"))
            log.info("document %s waits %d s for its key's limits", document.id, wait)
            await self._status(document, lease, "waiting_for_capacity", exc.message, timedelta(seconds=wait))
            return
        except (Unauthorized, AccountError) as exc:
            await self._status(document, lease, "error", f"the API key that uploaded it is no longer usable: {exc}")
            return
        except (UnreadableDocument, FileNotFoundError, AlizeError) as exc:
            await self._status(document, lease, "error", str(exc))
            return
        try:
            embedded = [await asyncio.wrap_future(embedder.submit(tokens[i:i + SLICE]))
                        for i in range(0, len(tokens), SLICE)]
        except BaseException:
            await call.abandon()
            raise
        rows = np.concatenate(embedded) if embedded else np.zeros((0, 1), dtype=np.float32)
        pairs = [(chunk, row.astype("<f4").tobytes()) for chunk, row in zip(chunks, rows, strict=True)]
        also = vectors.fill if self.pgvector else None
        stored = await call.record_with(200, lambda usage: store.finish(self.db, document.id, lease, text, pages,
                                                                        pairs, usage, also))
        log.info("document %s: %d chunks, %d tokens%s", document.id, len(pairs), call.prompt_tokens,
                 "" if stored else " (dropped: its lease had lapsed)")

    def _chunks(self, text: str, size: int) -> tuple[list[str], list[list[int]]]:
        """The text's chunks and their tokens; a chunk too long for the embedding model is
        halved until it fits."""
        _, embedder = self.hub.embedder(self.model_id)
        out: list[tuple[str, list[int]]] = []
        pending = split(text, size)[::-1]
        while pending:
            chunk = pending.pop()
            tokens = embedder.tokenize(chunk)
            if len(tokens) <= embedder.max_tokens or len(chunk) < 2:
                out.append((chunk, tokens[:embedder.max_tokens]))
            else:
                half = split(chunk, max(1, len(chunk) // 2))
                pending.extend(half[::-1] if len(half) > 1 else [chunk[len(chunk) // 2:], chunk[:len(chunk) // 2]])
        return [c for c, _ in out], [t for _, t in out]

    async def _status(self, document: DocumentRecord, lease: datetime, status: str, error: str,
                      retry: timedelta | None = None) -> None:
        now = datetime.now(UTC)
        await asyncio.to_thread(store.set_status, self.db, document.id, lease, status, error,
                                now + retry if retry else None, now)
