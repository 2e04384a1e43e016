"""Everything a running server needs, built once at start-up."""

import logging
from dataclasses import dataclass

from alize.config import Settings
from alize.registry import Registry
from alize.services.accounts import AccountService
from alize.services.auth import AuthService
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

    @classmethod
    def start(cls, settings: Settings) -> "Platform":
        registry = Registry.load(settings.config_file)
        db = Database(settings.resolved_database_url)
        db.migrate()
        hub = ModelHub(registry, settings)
        hub.load_all()
        chat = ChatService(hub)
        counters: Counters = RedisCounters(settings.redis_url) if settings.redis_url else MemoryCounters()
        return cls(settings, db, hub, AuthService(db), chat, FIMService(hub, chat),
                   CompletionService(hub), EmbeddingService(hub), counters, Meter(db, Limiter(counters, db)),
                   AccountService(db), ReportService(db),
                   FileService(db, DirectoryBlobStore(settings.data_dir / "files"), settings.max_file_bytes))

    def open_call(self, endpoint: str) -> Call:
        return self.meter.open(endpoint)

    def cache_scope(self, key_id: str) -> str | None:
        """The prefix-cache scope of a caller: its key unless configured otherwise."""
        return {"key": key_id, "global": "*", "off": None}[self.settings.prefix_cache]

    async def aclose(self) -> None:
        await self.counters.close()
        self.hub.close()
        self.db.close()
