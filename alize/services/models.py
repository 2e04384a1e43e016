"""Which models are loaded, and what GET /v1/models says about them."""

import logging
import os
import time

from alize.config import Settings
from alize.engine.chat_model import ChatModel
from alize.engine.core import EngineStats
from alize.engine.embedder import Embedder
from alize.engine.params import EngineConfig
from alize.errors import InvalidRequest, ModelNotFound
from alize.protocol.models import CAPABILITY_FLAGS, ModelCapabilities, ModelCard
from alize.registry import Backend, ModelEntry, Registry

log = logging.getLogger(__name__)


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
        self.created = int(time.time())

    def load_all(self) -> None:
        for backend in self.registry.backends.values():
            self._load(backend)

    def _load(self, backend: Backend) -> None:
        path = self.registry.resolve_path(backend)
        started = time.monotonic()
        if backend.kind == "chat":
            s = self.settings
            config = EngineConfig(
                context_per_sequence=backend.context_length, max_sequences=s.parallel,
                batch_tokens=s.batch_tokens, queue_size=s.queue_size, queue_timeout_s=s.queue_timeout,
                threads=self._threads,
            )
            self._chat[backend.name] = ChatModel.load(backend.name, path, config, self.registry.chat_template(backend),
                                                 backend.prompt_format)
        else:
            self._embedders[backend.name] = Embedder(backend.name, path, self._threads)
        log.info("loaded %s from %s in %.1f s", backend.name, path, time.monotonic() - started)

    def stop_generating(self) -> None:
        """Shutting down: every chat engine admits nothing more and ends what it runs."""
        for model in self._chat.values():
            model.engine.close()

    def close(self) -> None:
        for model in self._chat.values():
            model.close()

    def engine_stats(self) -> dict[str, EngineStats]:
        return {name: model.core.stats for name, model in self._chat.items()}

    def chat_model(self, model_id: str, capability: str = "completion_chat") -> tuple[ModelEntry, ChatModel]:
        entry = self.registry.get(model_id)
        if entry.backend.kind != "chat":
            raise InvalidRequest(f"Model {model_id} is an embedding model; it cannot generate text",
                                 param="model")
        if capability not in entry.capabilities:
            raise InvalidRequest(f"Model {model_id} does not support {capability}", param="model")
        return entry, self._chat[entry.backend.name]

    def embedder(self, model_id: str) -> tuple[ModelEntry, Embedder]:
        entry = self.registry.get(model_id)
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
