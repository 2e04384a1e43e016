"""Which models are loaded, and what GET /v1/models says about them."""

import logging
import os
import time
from pathlib import Path

from alize.config import Settings
from alize.engine.chat_model import ChatModel
from alize.engine.core import EngineStats
from alize.engine.embedder import Embedder
from alize.engine.params import EngineConfig
from alize.engine.requantize import rewritten
from alize.engine.token_count import TokenCounter
from alize.errors import InvalidRequest, ModelNotFound, Unsupported
from alize.protocol.models import CAPABILITY_FLAGS, ModelCapabilities, ModelCard
from alize.registry import Backend, ModelEntry, Registry
from alize.upstream.client import UpstreamClient, UpstreamPool
from alize.upstream.health import HealthBook
from alize.upstream.router import Router

log = logging.getLogger(__name__)


DEFAULT_KV_CACHE_MB = 320


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 * 2**30


def kv_cache_sizes(settings: Settings) -> tuple[int, int, int]:
    """EngineConfig's KV sizes for a chat model by the settings (0: unset): a pool's bytes
    (kv_bytes), how far it may grow to hold one full context (kv_bytes_for_context), and the
    budget past which buffers of their own become a pool (kv_budget)."""
    chosen = settings.kv_cache_mb * 2**20 if settings.kv_cache_mb is not None else 0
    if settings.kv_layout == "per-sequence":
        return 0, 0, 0
    if settings.kv_layout == "auto":
        return 0, 0, chosen or machine_memory() // 4
    if chosen:
        return chosen, 0, 0
    eighth = machine_memory() // 8
    return min(DEFAULT_KV_CACHE_MB * 2**20, eighth), eighth, 0


def local_model_file(registry: Registry, backend: Backend, cache_dir: Path) -> Path:
    """The file a local backend runs: its own, or for `requantize = "q8_0"` a copy with its
    Q4_1/Q5_1 weights as Q8_0, written into `cache_dir` on first use (engine/requantize.py)."""
    path = registry.resolve_path(backend)
    return rewritten(path, cache_dir) if backend.requantize == "q8_0" else path


BUILTIN_CHAT_BACKEND = "smollm2-135m-instruct"


def builtin_chat_file() -> Path:
    """The file the server runs for the built-in chat model (its weights as Q8_0, rewritten on
    first use): what benchmarks and engine tests load, so that every engine gets the same."""
    registry = Registry.load()
    return local_model_file(registry, registry.backends[BUILTIN_CHAT_BACKEND], Settings().model_cache_dir)


def may_use(entry: ModelEntry, allowed: tuple[str, ...]) -> bool:
    """Whether a key limited to `allowed` model ids (empty: all) may use this model."""
    return not allowed or entry.id in allowed or entry.canonical_id in allowed


class ModelHub:
    """Loads every backend named by the registry once, at start-up."""

    def __init__(self, registry: Registry, settings: Settings):
        self.registry = registry
        self.settings = settings
        self._threads = settings.threads or max(1, os.cpu_count() or 1)
        self._chat: dict[str, ChatModel] = {}
        self._embedders: dict[str, Embedder] = {}
        self.pools: dict[str, UpstreamPool] = {}  # by canonical model id
        self._counters: dict[str, TokenCounter] = {}  # by canonical model id, for upstream models
        self.created = int(time.time())

    def load_all(self) -> None:
        for backend in self.registry.local_backends():
            self._load(backend)
        self._connect_upstreams()

    def _connect_upstreams(self) -> None:
        """One client per upstream backend, one pool (routing, health) per model they serve."""
        clients: dict[str, UpstreamClient] = {}
        for entry in self.registry.models():
            if not entry.is_upstream:
                continue
            for b in entry.backends:
                if b.name not in clients:
                    key = os.environ.get(b.api_key_env) if b.api_key_env else None
                    if b.api_key_env and not key:
                        log.warning("backend %s: the variable %s is not set; calling it without a key",
                                    b.name, b.api_key_env)
                    clients[b.name] = UpstreamClient(b.name, b.url, key, b.connect_timeout, b.read_timeout,
                                                     b.max_inflight, b.health_path)
            names = [b.name for b in entry.backends]
            tokenizer = next((b for b in entry.backends if b.tokenizer), None)
            if entry.canonical_id not in self._counters:
                self._counters[entry.canonical_id] = TokenCounter.load(
                    self.registry.tokenizer_path(tokenizer) if tokenizer else None)
            self.pools[entry.canonical_id] = UpstreamPool(
                ", ".join(names), {n: clients[n] for n in names},
                Router(names, entry.routing),  # type: ignore[arg-type]
                HealthBook(names))
            log.info("model %s: upstream %s (%s routing)", entry.canonical_id, ", ".join(
                f"{b.name}={b.url}" for b in entry.backends), entry.routing)

    def pool(self, entry: ModelEntry) -> UpstreamPool:
        return self.pools[entry.canonical_id]

    def counter(self, entry: ModelEntry) -> TokenCounter:
        """Counts an upstream model's tokens where its engine reports none (exact with the
        tokenizer a backend names, an estimate otherwise)."""
        return self._counters[entry.canonical_id]

    def backends_status(self) -> list[dict[str, object]]:
        """Every upstream-served model: its routing and each replica's health and load."""
        return [{"model": model_id, "routing": pool.router.policy, "replicas": pool.status()}
                for model_id, pool in self.pools.items()]

    def _load(self, backend: Backend) -> None:
        started = time.monotonic()
        path = local_model_file(self.registry, backend, self.settings.model_cache_dir)
        if backend.kind == "chat":
            s = self.settings
            kv_bytes, kv_bytes_for_context, kv_budget = kv_cache_sizes(s)
            config = EngineConfig(
                context_per_sequence=backend.context_length, max_sequences=s.parallel,
                batch_tokens=s.batch_tokens, queue_size=s.queue_size, queue_timeout_s=s.queue_timeout,
                threads=self._threads, kv_type=s.kv_cache_type, prompt_lookup=s.prompt_lookup,
                kv_bytes=kv_bytes, kv_bytes_for_context=kv_bytes_for_context, kv_budget=kv_budget,
            )
            self._chat[backend.name] = ChatModel.load(backend.name, path, config, self.registry.chat_template(backend),
                                                 backend.prompt_format)
        else:
            # a sentence-transformers folder is converted to GGUF once, kept in the model cache
            self._embedders[backend.name] = Embedder(backend.name, path, self._threads,
                                                     self.settings.model_cache_dir)
        log.info("loaded %s from %s in %.1f s", backend.name, path, time.monotonic() - started)

    def stop_generating(self) -> None:
        """Shutting down: every chat engine admits nothing more and ends what it runs."""
        for model in self._chat.values():
            model.engine.close()

    def close(self) -> None:
        for model in self._chat.values():
            model.close()

    async def end_upstream_streams(self) -> None:
        """Closes the connections to upstream engines: answers still streaming from them end
        with an error chunk (the engines stop generating)."""
        for pool in self.pools.values():
            await pool.aclose()

    async def aclose_upstreams(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()
        for counter in self._counters.values():
            counter.close()

    def engine_stats(self) -> dict[str, tuple[EngineStats, float]]:
        """Each local chat engine's counters and the share of its KV cache in use."""
        return {name: (model.core.stats, model.kv_usage()) for name, model in self._chat.items()}

    def _local(self, model_id: str) -> ModelEntry:
        """The entry of a model this server runs itself (an upstream one: a 400 saying so)."""
        entry = self.registry.get(model_id)
        if entry.is_upstream:
            raise Unsupported(f"Model {model_id} is served by an upstream engine", param="model")
        return entry

    def capable(self, model_id: str, capability: str) -> ModelEntry:
        """The model's entry, if it has the capability ("completion_fim"...); a 400 if not."""
        entry = self.registry.get(model_id)
        if capability not in entry.capabilities:
            raise InvalidRequest(f"Model {model_id} does not support {capability}", param="model")
        return entry

    def chat_model(self, model_id: str, capability: str = "completion_chat") -> tuple[ModelEntry, ChatModel]:
        entry = self._local(model_id)
        if entry.backend.kind != "chat":
            raise InvalidRequest(f"Model {model_id} is an embedding model; it cannot generate text",
                                 param="model")
        self.capable(model_id, capability)
        return entry, self._chat[entry.backend.name]

    def embedder(self, model_id: str) -> tuple[ModelEntry, Embedder]:
        entry = self._local(model_id)
        if entry.backend.kind != "embedding":
            raise InvalidRequest(f"Model {model_id} is not an embedding model", param="model")
        return entry, self._embedders[entry.backend.name]

    def card(self, model_id: str, allowed: tuple[str, ...] = ()) -> ModelCard:
        entry = self.registry.get(model_id)
        if not may_use(entry, allowed):  # a key limited to some models sees only those
            raise ModelNotFound(f"Invalid model: {model_id}", param="model")
        return self._card(entry)

    def cards(self, allowed: tuple[str, ...] = ()) -> list[ModelCard]:
        return [self._card(entry) for entry in self.registry.entries() if may_use(entry, allowed)]

    def _card(self, entry: ModelEntry) -> ModelCard:
        flags = {flag: flag in entry.capabilities for flag in CAPABILITY_FLAGS}
        return ModelCard(
            id=entry.id,
            created=self.created,
            capabilities=ModelCapabilities(**flags),
            name=entry.backend.name,
            description=entry.description,
            max_context_length=entry.backend.context_length,
            aliases=entry.aliases,
            default_model_temperature=entry.backend.default_temperature,
        )
