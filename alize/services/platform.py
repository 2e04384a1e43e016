"""Everything a running server needs, built once at start-up."""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from alize.config import Settings
from alize.registry import Registry
from alize.services import batch_lines
from alize.services.accounts import AccountService
from alize.services.admin import AdminView
from alize.services.agents import AgentService, agent_chat_request
from alize.services.auth import AuthService
from alize.services.batch import BatchService
from alize.services.batch_worker import BatchWorker
from alize.services.chat import ChatService
from alize.services.completions import CompletionService
from alize.services.console_sessions import SessionService
from alize.services.conversations import ConversationService
from alize.services.dashboard import Dashboard
from alize.services.embeddings import EmbeddingService
from alize.services.files import FileService
from alize.services.fim import FIMService
from alize.services.guardrails import GuardrailService
from alize.services.libraries import LibraryService
from alize.services.library_worker import DocumentWorker
from alize.services.limits import Limiter
from alize.services.metering import PROGRESS_S, RECLAIM_EVERY, Call, Meter
from alize.services.models import ModelHub
from alize.services.moderations import ModerationService
from alize.services.reports import ReportService
from alize.services.retrieval import Retriever
from alize.services.telemetry import Telemetry, backend_metrics, budget_metrics, engine_metrics
from alize.services.tracing import Tracing
from alize.services.upstream_text import UpstreamText
from alize.store import vectors
from alize.store.accounts import KeyInfo
from alize.store.blobs import DirectoryBlobStore
from alize.store.counters import Counters, MemoryCounters
from alize.store.db import Database
from alize.store.redis_counters import RedisCounters

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
    sessions: SessionService
    dashboard: Dashboard
    telemetry: Telemetry
    agents: AgentService
    conversations: ConversationService
    moderations: ModerationService
    libraries: LibraryService
    document_worker: DocumentWorker
    retriever: Retriever
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    draining: bool = False

    @classmethod
    def start(cls, settings: Settings) -> "Platform":
        registry = Registry.load(settings.config_file)
        db = Database(settings.resolved_database_url)
        db.migrate()
        hub = ModelHub(registry, settings)
        hub.load_all()
        chat, upstream_text = ChatService(hub), UpstreamText(hub)
        fim, embeddings = FIMService(hub, chat, upstream_text), EmbeddingService(hub)
        counters: Counters = RedisCounters(settings.redis_url) if settings.redis_url else MemoryCounters()
        telemetry = Telemetry()
        meter = Meter(db, Limiter(counters, db, refused=lambda limit: telemetry.rate_limited.labels(limit).inc()),
                      telemetry=telemetry if settings.metrics else None, tracing=Tracing.from_environment())
        agents = AgentService(db, hub)
        files = FileService(db, DirectoryBlobStore(settings.data_dir / "files"), settings.max_file_bytes)
        moderations = ModerationService(chat)
        pgvector = vectors.enable(db)
        retriever = Retriever(db, hub, settings.library_embedding_model, pgvector)
        conversations = ConversationService(db, agents, chat, retriever)
        lines = batch_lines.runners(chat, fim, embeddings, moderations, conversations,
                                    partial(agent_chat_request, agents, retriever))
        worker = BatchWorker(db, files, meter, lines,
                             owner=settings.resolved_worker_id, concurrency=settings.batch_concurrency,
                             price_factor=1 - settings.batch_discount,
                             cache_scope=lambda key_id: cache_scope(settings, key_id))
        documents = DirectoryBlobStore(settings.data_dir / "documents")
        log.info("document libraries search with %s", "pgvector" if pgvector else "numpy (portable)")
        document_worker = DocumentWorker(db, documents, hub, meter, settings.library_embedding_model,
                                         settings.resolved_worker_id, pgvector)
        chat.guard = GuardrailService(hub, moderations).check
        return cls(settings, db, hub, AuthService(db), chat, fim, CompletionService(hub, upstream_text), embeddings,
                   counters, meter, AccountService(db), ReportService(db), files,
                   BatchService(db, hub, files, agents, on_change=worker.wake), worker,
                   SessionService(db, timedelta(minutes=settings.console_idle_minutes),
                                  timedelta(hours=settings.console_session_hours)),
                   Dashboard(db, registry.comparison), telemetry, agents,
                   conversations, moderations,
                   LibraryService(db, documents, settings.max_document_bytes, on_upload=document_worker.wake),
                   document_worker, retriever)

    def __post_init__(self) -> None:
        """Metrics read at scrape time: engines, upstream replicas, budgets."""
        self.telemetry.add_source(lambda: engine_metrics(self.hub))
        self.telemetry.add_source(lambda: backend_metrics(self.hub))
        self.telemetry.add_source(lambda: budget_metrics(self.dashboard.budgets_left(self.accounts.list_workspaces())))

    def start_background(self) -> None:
        """Starts the batch worker, the meter's leases, the document worker and the expired
        files' sweep on the running event loop."""
        self._background.append(asyncio.create_task(self.batch_worker.run(), name="batch-worker"))
        self._background.append(asyncio.create_task(self._keep_leases(), name="meter-leases"))
        self._background.append(asyncio.create_task(self.document_worker.run(), name="document-worker"))
        self._background.append(asyncio.create_task(self.files.run(), name="file-sweeper"))
        for model_id, pool in self.hub.pools.items():  # upstream replicas' health checks
            self._background.append(asyncio.create_task(pool.watch(), name=f"upstream-health-{model_id}"))

    async def _keep_leases(self) -> None:
        """At start-up, the shared limit counters reconciled with the usage table; then every
        second the meter's tick (streams' progress; every few seconds, dead servers'
        reservations given back and their streams billed). A failure (the database or Redis away) is logged
        and tried again at the next tick."""
        try:
            for name, total in await self.meter.limiter.reconcile():
                log.info("limit counter %s reconciled with the usage table: %d", name, total)
        except Exception:
            log.exception("could not reconcile the limit counters at start-up")
        for n in itertools.count():
            try:
                await self.meter.tick(reclaim=n % RECLAIM_EVERY == 0)
            except Exception:
                log.exception("the meter's tick failed; trying again in %d s", PROGRESS_S)
            await asyncio.sleep(PROGRESS_S)

    async def not_ready(self, timeout_s: float = 3.0) -> list[str]:
        """Why this server should not take traffic now (empty: ready): it is stopping, or the
        database or Redis does not answer within the timeout. Models load before the server
        listens, so a listening server has them all."""
        reasons = ["the server is stopping"] if self.draining else []
        checks = {"database": lambda: asyncio.to_thread(self.db.ping)}
        if self.settings.redis_url:
            checks["redis"] = self.counters.ping
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout_s)
            except TimeoutError:
                reasons.append(f"{name}: no answer in {timeout_s:g} s")
            except Exception as exc:
                reasons.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return reasons

    def open_call(self, endpoint: str, key: KeyInfo, request_id: str | None = None,
                  traceparent: str | None = None) -> Call:
        """The metered call of a request by `key` to `endpoint` (one of ENDPOINT_NAMES' names),
        within the client's trace (traceparent) when tracing is on."""
        return self.meter.open(endpoint, key, self.cache_scope(key.id), request_id, traceparent)

    def admin_view(self, admin: KeyInfo) -> AdminView:
        """What this admin key may see and manage (every workspace, or its own)."""
        return AdminView(admin, self.accounts, self.reports)

    def cache_scope(self, key_id: str) -> str | None:
        return cache_scope(self.settings, key_id)

    async def drain(self, busy: Callable[[], bool], seconds: float) -> None:
        """The server is stopping (SIGINT, SIGTERM): it admits nothing more (new requests
        503, /ready 503); the batch worker stops (lines in flight cut unwritten) and gives
        its jobs' leases back, so that another server takes them up at once; running
        requests and streams may finish for up to `seconds` (while `busy()`); then what
        remains ends at once, streams with a last chunk (finish_reason "error") and [DONE].
        The meter keeps its leases meanwhile: no other server bills these streams."""
        self.draining = True
        worker = next((t for t in self._background if t.get_name() == "batch-worker"), None)
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            self._background.remove(worker)
            await self.batch_worker.release()
        deadline = time.monotonic() + seconds
        while busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if busy():
            log.warning("drain: %g s passed; ending the requests still open", seconds)
        self.hub.stop_generating()
        await self.hub.end_upstream_streams()

    async def _stop_background(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()

    async def aclose(self) -> None:
        await self._stop_background()
        await self.counters.close()
        await self.hub.aclose_upstreams()
        self.hub.close()
        self.db.close()
        if self.meter.tracing is not None:
            self.meter.tracing.shutdown()
