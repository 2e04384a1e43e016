"""pgvector, where the PostgreSQL server has it: library chunks get an `embedding vector`
column beside their portable float32 bytes, and the nearest chunks are found by the server
(`<=>`, cosine distance) instead of by numpy over every vector. It is turned on at start-up
when the extension can be created (or exists); chunks stored before that are filled in then.
SQLite, and PostgreSQL without it, keep the portable path (services/retrieval.py)."""

import logging
from collections.abc import Sequence

import numpy as np
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from alize.store.db import Database
from alize.store.libraries import ChunkHit

log = logging.getLogger("alize.store")
FILL = 500  # chunks filled in per statement at start-up
UPDATE = "update library_chunks set embedding = cast(:e as vector) where document_id = :d and position = :p"


def literal(vector: np.ndarray | bytes) -> str:
    """A vector as pgvector's text form, '[0.1,0.2,...]'."""
    values = np.frombuffer(vector, dtype="<f4") if isinstance(vector, bytes) else vector
    return "[" + ",".join(repr(float(x)) for x in values) + "]"


def enable(db: Database) -> bool:
    """Makes sure the extension and the column exist, fills the column where it is empty;
    says whether the pgvector path is on."""
    if db.engine.dialect.name != "postgresql":
        return False
    with db.engine.begin() as conn:
        if conn.execute(text("select 1 from pg_available_extensions where name = 'vector'")).first() is None:
            return False
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except DBAPIError as exc:
            log.warning("pgvector is installed but could not be enabled (%s); libraries search with numpy",
                        str(exc.orig).splitlines()[0])
            return False
        conn.execute(text("ALTER TABLE library_chunks ADD COLUMN IF NOT EXISTS embedding vector"))
    filled = 0
    while True:
        with db.engine.begin() as conn:
            rows = conn.execute(text("select document_id, position, vector from library_chunks "
                                     "where embedding is null limit :n"), {"n": FILL}).all()
            if not rows:
                break
            conn.execute(text(UPDATE), [{"e": literal(bytes(r.vector)), "d": r.document_id, "p": r.position} for r in rows])
            filled += len(rows)
    if filled:
        log.info("pgvector: %d chunks stored before it was enabled are indexed now", filled)
    return True


def fill(connection: Connection, document_id: str, vectors: Sequence[bytes]) -> None:
    """Sets the embedding of a document's chunks just stored (within the caller's transaction)."""
    connection.execute(text(UPDATE), [{"e": literal(v), "d": document_id, "p": i} for i, v in enumerate(vectors)])


def nearest(db: Database, library_ids: list[str], query: np.ndarray, k: int) -> list[tuple[ChunkHit, float]]:
    """The k chunks of the libraries nearest to `query`, with their cosine similarity."""
    if not library_ids:
        return []
    statement = text("select c.document_id, d.name, c.position, c.text, c.vector, "
                     "1 - (c.embedding <=> cast(:q as vector)) as score "
                     "from library_chunks c join library_documents d on d.id = c.document_id "
                     "where c.library_id in :ids and c.embedding is not null "
                     "and (d.expires_at is null or d.expires_at > now()) "
                     "order by c.embedding <=> cast(:q as vector) limit :k"
                     ).bindparams(bindparam("ids", expanding=True))
    with db.engine.connect() as conn:
        rows = conn.execute(statement, {"q": literal(query), "ids": library_ids, "k": k}).all()
    return [(ChunkHit(r[0], r[1], r[2], r[3], bytes(r[4])), float(r[5])) for r in rows]
