"""Everything a running server needs, built once at start-up."""

import asyncio
import logging
from dataclasses import dataclass, field

from alize.config import Settings
from alize.registry import Registry
from alize.services import batch_lines
from alize.services.accounts import AccountService
from alize.services.auth import AuthService
from alize.services.batch import BatchService
from alize.services.batch_worker import BatchWorker
from alize.services.chat import ChatService
from alize.services.completions import CompletionService
from alize.services.embeddings import EmbeddingService
from alize.services.files import FileService
from alize.services.fim import FIMService
from alize.services.limits import Limiter
from alize.services.metering import Call, Meter
from alize.services.models import ModelHub
from alize.services.reports import ReportService
from alize.store.blobs import DirectoryBlobStore
from alize.store.counters import Counters, MemoryCounters, RedisCounters
from alize.store.db import Database

log = logging.getLogger(__name__)


def cache_scope(settings: Settings, key_id: str) -> str | None:
    """The prefix-cache scope of a caller: its key unless configured otherwise."""
    return {"key": key_id, "global": "*", "off": None}[settings.prefix_cache]


@dataclass
class Platform:
    settings: Settings
    db: Database
    hub: ModelHub
    auth: AuthService
    chat: ChatService
    fim: FIMService
    completions: CompletionService
    embeddings: EmbeddingService
    counters: Counters
    meter: Meter
    accounts: AccountService
    reports: ReportService
    files: FileService
    batches: BatchService
    batch_worker: BatchWorker
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings) -> "Platform":
        registry = Registry.load(settings.config_file)
        db = Database(settings.resolved_database_url)
        db.migrate()
        hub = ModelHub(registry, settings)
        hub.load_all()
        chat = ChatService(hub)
        fim, embeddings = FIMService(hub, chat), EmbeddingService(hub)
        counters: Counters = RedisCounters(settings.redis_url) if settings.redis_url else MemoryCounters()
        meter = Meter(db, Limiter(counters, db))
        files = FileService(db, DirectoryBlobStore(settings.data_dir / "files"), settings.max_file_bytes)
        worker = BatchWorker(db, files, meter, batch_lines.runners(chat, fim, embeddings),
                             owner=settings.resolved_worker_id, concurrency=settings.batch_concurrency,
                             price_factor=1 - settings.batch_discount,
                             cache_scope=lambda key_id: cache_scope(settings, key_id))
        return cls(settings, db, hub, AuthService(db), chat, fim, CompletionService(hub), embeddings, counters,
                   meter, AccountService(db), ReportService(db), files,
                   BatchService(db, hub, files, on_change=worker.wake), worker)

    def start_background(self) -> None:
        """Starts the batch worker on the running event loop."""
        self._background.append(asyncio.create_task(self.batch_worker.run(), name="batch-worker"))

    def open_call(self, endpoint: str) -> Call:
        return self.meter.open(endpoint)

    def cache_scope(self, key_id: str) -> str | None:
        return cache_scope(self.settings, key_id)

    async def aclose(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.counters.close()
        self.hub.close()
        self.db.close()
