"""The document_library tool: the chunks of an agent's libraries nearest to the user's
latest message, by cosine of their embeddings (the best few, less any scoring under half
the best), shown to the model as context before it answers. Retrieval runs on every user
turn rather than when the model asks for it: small models call tools unreliably, and a
search is cheap (docs/api.md, Libraries).

Vectors live in the database as float32 bytes and are scored here with numpy: portable
(SQLite and PostgreSQL alike) and fast enough for libraries of tens of thousands of chunks.
Where PostgreSQL has pgvector, the database finds the nearest chunks (store/vectors.py).
The query's embedding is metered as a `libraries` request of the caller's key."""

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import content_text
from alize.store import libraries as store
from alize.store import vectors
from alize.store.db import Database
from alize.store.libraries import ChunkHit

ENDPOINT = "libraries"
TOP_K = 4
RELATIVE = 0.5  # a chunk scoring under half the best one's is left out: it is noise next to it
TOOL = "document_library"


@dataclass(frozen=True)
class Hit:
    chunk: ChunkHit
    score: float


@dataclass(frozen=True)
class Retrieval:
    query: str
    hits: list[Hit]

    @property
    def arguments(self) -> str:
        return json.dumps({"query": self.query})

    def info(self) -> dict[str, Any]:
        return {"results": [{"document_id": h.chunk.document_id, "document_name": h.chunk.document_name,
                             "chunk": h.chunk.position, "score": round(h.score, 4)} for h in self.hits]}

    def context(self) -> str:
        """The system message that puts the chunks before the model."""
        parts = [f"[{i}] {h.chunk.document_name}\n{h.chunk.text}" for i, h in enumerate(self.hits, 1)]
        found = "\n\n".join(parts) if parts else "(nothing relevant was found)"
        return ("Answer from these excerpts of the user's documents when they are relevant, and say so "
                f"when they do not hold the answer.\n\n{found}")

    def references(self) -> list[dict[str, Any]]:
        """Each document drawn on, once, as a tool_reference chunk of the answer."""
        seen: dict[str, dict[str, Any]] = {}
        for hit in self.hits:
            seen.setdefault(hit.chunk.document_id, {"type": "tool_reference", "tool": TOOL,
                                                    "title": hit.chunk.document_name, "url": None, "favicon": None,
                                                    "description": hit.chunk.text[:200]})
        return list(seen.values())


def _searching(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The document_library tools among `tools` whose tool_configuration leaves the search on
    (`include` names it, or is unset; `exclude` does not name it)."""
    out = []
    for tool in tools or []:
        if isinstance(tool, dict) and tool.get("type") == TOOL:
            config = tool.get("tool_configuration") or {}
            if (config.get("include") is None or TOOL in config["include"]) and TOOL not in (config.get("exclude") or []):
                out.append(tool)
    return out


def library_ids(tools: list[dict[str, Any]] | None) -> list[str]:
    """The libraries the document_library tools among `tools` search."""
    return [i for t in _searching(tools) for i in t.get("library_ids") or []]


def needs_confirmation(tools: list[dict[str, Any]] | None) -> bool:
    """Whether a search waits for the client's confirmation first (the tool's
    tool_configuration.requires_confirmation names it): conversations ask for it."""
    return any(TOOL in ((t.get("tool_configuration") or {}).get("requires_confirmation") or [])
               for t in _searching(tools))


def last_user_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of the last message, if it is the user's (else nothing to look up)."""
    if not messages or messages[-1].get("role") != "user":
        return None
    return content_text(messages[-1].get("content"), "the last message").strip() or None


def grounded(messages: list[dict[str, Any]], retrieval: Retrieval) -> list[dict[str, Any]]:
    """The messages with the retrieval's context as a system message before the last one."""
    return [*messages[:-1], {"role": "system", "content": retrieval.context()}, messages[-1]]


class Retriever:
    def __init__(self, db: Database, hub: ModelHub, model_id: str, pgvector: bool = False):
        self.db = db
        self.hub = hub
        self.model_id = model_id
        self.pgvector = pgvector  # the database finds the nearest chunks (store/vectors.py)

    async def search(self, call: Call, libraries: list[str], query: str, k: int = TOP_K) -> Retrieval:
        assert call.key is not None
        libraries = await asyncio.to_thread(store.seen, self.db, call.key.workspace.id, libraries)
        if not libraries:
            return Retrieval(query, [])
        vector = await self._embed(call, query)
        if self.pgvector:
            found = await asyncio.to_thread(vectors.nearest, self.db, libraries, vector, k)
            hits = [Hit(chunk, score) for chunk, score in found]
        else:
            chunks = await asyncio.to_thread(store.chunks_of, self.db, libraries)
            if not chunks:
                return Retrieval(query, [])
            matrix = np.frombuffer(b"".join(c.vector for c in chunks), dtype="<f4").reshape(len(chunks), -1)
            scores = matrix @ vector
            hits = [Hit(chunks[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")[:k]]
        floor = hits[0].score * RELATIVE if hits else 0.0
        return Retrieval(query, [h for h in hits if h.score >= floor])

    async def _embed(self, call: Call, query: str) -> np.ndarray:
        """The query's unit vector, metered as a `libraries` request of the caller's key."""
        assert call.key is not None
        entry, embedder = self.hub.embedder(self.model_id)
        # the query's last tokens, where it is longer than the embedding model takes
        tokens = (await asyncio.to_thread(embedder.tokenize, query))[-embedder.max_tokens:]
        lookup = call.meter.open(ENDPOINT, call.key, None, call.request_id) if call.meter else Call(None, ENDPOINT)
        await lookup.admit(entry, len(tokens), 0)
        try:
            vector = (await asyncio.wrap_future(embedder.submit([tokens])))[0]
        except BaseException:
            await lookup.abandon()
            raise
        await lookup.succeed()
        return np.asarray(vector, dtype=np.float32)
