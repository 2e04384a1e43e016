"""Document libraries, their sharing, documents and chunks. A library is looked up for a
workspace: its owner's, or one it is shared with (as Viewer or Editor); to any other
workspace it does not exist. Documents are processed by whichever server claims them
first: a claim is a lease, so a document whose server died is taken up again."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from alize.store import usage as usage_store
from alize.store.accounts import aware, lapsed, unexpired
from alize.store.db import Database
from alize.store.tables import DocumentLink, Library, LibraryChunk, LibraryDocument, LibraryShare

OWNER, EDITOR, VIEWER = "Owner", "Editor", "Viewer"
CLAIMABLE = ("todo", "waiting_for_capacity", "in_progress")  # the last two once their lease has lapsed


class Missing(Exception):
    """No such library for the workspace, or no such document in it."""


class Denied(Exception):
    """The workspace sees the library but its role does not allow the change."""


@dataclass(frozen=True)
class LibraryRecord:
    id: str
    workspace_id: str  # the owner
    name: str
    description: str | None
    chunk_size: int | None
    created_at: datetime
    updated_at: datetime
    role: str  # the asking workspace's
    documents: int
    total_size: int
    shared_with: int  # how many other workspaces see it


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    library_id: str
    key_id: str
    name: str
    mime_type: str | None
    extension: str | None
    size: int
    sha256: str
    status: str
    error: str | None
    attributes: dict[str, Any] | None
    expires_at: datetime | None
    pages: int | None
    tokens: int
    created_at: datetime
    processed_at: datetime | None


@dataclass(frozen=True)
class ChunkHit:
    document_id: str
    document_name: str
    position: int
    text: str
    vector: bytes


def _role(session: Session, workspace_id: str, library: Library | None) -> str:
    if library is None:
        raise Missing("no such library")
    if library.workspace_id == workspace_id:
        return OWNER
    role = session.scalar(select(LibraryShare.role).where(LibraryShare.library_id == library.id,
                                                          LibraryShare.workspace_id == workspace_id))
    if role is None:
        raise Missing("no such library")
    return role


def _library(session: Session, workspace_id: str, library_id: str, need: tuple[str, ...] = ()) -> tuple[Library, str]:
    """The library and the workspace's role in it; Missing if it cannot see it, Denied if
    the role is not one of `need` (when given)."""
    library = session.get(Library, library_id)
    try:
        role = _role(session, workspace_id, library)
    except Missing:
        raise Missing(f"No library with id {library_id}") from None
    assert library is not None
    if need and role not in need:
        raise Denied(f"Library {library_id} is shared with this workspace as {role}, which may not do this")
    return library, role


def _record(session: Session, row: Library, role: str) -> LibraryRecord:
    count, size = session.execute(select(func.count(), func.coalesce(func.sum(LibraryDocument.size), 0))
                                  .where(LibraryDocument.library_id == row.id, unexpired(LibraryDocument.expires_at))).one()
    shared = session.scalar(select(func.count()).select_from(LibraryShare).where(LibraryShare.library_id == row.id))
    return LibraryRecord(row.id, row.workspace_id, row.name, row.description, row.chunk_size,
                         aware(row.created_at) or row.created_at, aware(row.updated_at) or row.updated_at, role,
                         int(count), int(size), int(shared or 0))


def _document(row: LibraryDocument) -> DocumentRecord:
    return DocumentRecord(row.id, row.library_id, row.key_id, row.name, row.mime_type, row.extension, row.size,
                          row.sha256, row.status, row.error, json.loads(row.attributes) if row.attributes else None,
                          aware(row.expires_at), row.pages, row.tokens, aware(row.created_at) or row.created_at,
                          aware(row.processed_at))


# -- libraries ------------------------------------------------------------------------
def create(db: Database, workspace_id: str, library_id: str, name: str, description: str | None,
           chunk_size: int | None, now: datetime) -> LibraryRecord:
    with db.session() as session, session.begin():
        row = Library(id=library_id, workspace_id=workspace_id, name=name, description=description,
                      chunk_size=chunk_size, created_at=now, updated_at=now)
        session.add(row)
        session.flush()
        return _record(session, row, OWNER)


def get(db: Database, workspace_id: str, library_id: str) -> LibraryRecord:
    with db.session() as session:
        return _record(session, *_library(session, workspace_id, library_id))


def visible(db: Database, workspace_id: str, search: str | None, offset: int, limit: int) -> tuple[list[LibraryRecord], int]:
    """The libraries the workspace owns or is shared, newest first, and how many in all."""
    shared = select(LibraryShare.library_id).where(LibraryShare.workspace_id == workspace_id)
    where = [or_(Library.workspace_id == workspace_id, Library.id.in_(shared))]
    if search:
        where.append(func.lower(Library.name).contains(search.lower(), autoescape=True))
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(Library).where(*where)) or 0
        rows = list(session.scalars(select(Library).where(*where).order_by(Library.created_at.desc(), Library.id)
                                    .offset(offset).limit(limit)))
        return [_record(session, r, _role(session, workspace_id, r)) for r in rows], int(total)


def change(db: Database, workspace_id: str, library_id: str, fields: dict[str, Any], now: datetime) -> LibraryRecord:
    with db.session() as session, session.begin():
        row, role = _library(session, workspace_id, library_id, (OWNER, EDITOR))
        for name, value in fields.items():
            setattr(row, name, value)
        row.updated_at = now
        return _record(session, row, role)


def remove(db: Database, workspace_id: str, library_id: str) -> tuple[LibraryRecord, list[str]]:
    """Deletes the library (its owner only) with its documents and chunks; returns what it
    was and its documents' ids (whose blobs go next)."""
    with db.session() as session, session.begin():
        row, role = _library(session, workspace_id, library_id, (OWNER,))
        record = _record(session, row, role)
        ids = list(session.scalars(select(LibraryDocument.id).where(LibraryDocument.library_id == library_id)))
        session.execute(delete(LibraryChunk).where(LibraryChunk.library_id == library_id))
        session.execute(delete(DocumentLink).where(DocumentLink.document_id.in_(ids)))
        session.execute(delete(LibraryDocument).where(LibraryDocument.library_id == library_id))
        session.execute(delete(LibraryShare).where(LibraryShare.library_id == library_id))
        session.delete(row)
        return record, ids


# -- sharing ----------------------------------------------------------------------------
def shares(db: Database, workspace_id: str, library_id: str) -> list[tuple[str, str]]:
    """(workspace id, role) of each workspace that sees the library, its owner first."""
    with db.session() as session:
        row, _ = _library(session, workspace_id, library_id)
        rows = session.execute(select(LibraryShare.workspace_id, LibraryShare.role)
                               .where(LibraryShare.library_id == library_id).order_by(LibraryShare.workspace_id))
        return [(row.workspace_id, OWNER), *((w, r) for w, r in rows)]


def share(db: Database, workspace_id: str, library_id: str, with_workspace: str, role: str | None) -> None:
    """Gives another workspace a role in the library (None: takes it away). Owner only."""
    with db.session() as session, session.begin():
        _library(session, workspace_id, library_id, (OWNER,))
        existing = session.get(LibraryShare, (library_id, with_workspace))
        if role is None:
            if existing is None:
                raise Missing(f"Library {library_id} is not shared with workspace {with_workspace}")
            session.delete(existing)
        elif existing is None:
            session.add(LibraryShare(library_id=library_id, workspace_id=with_workspace, role=role))
        else:
            existing.role = role


# -- documents ----------------------------------------------------------------------------
def add_document(db: Database, workspace_id: str, row: LibraryDocument) -> DocumentRecord:
    with db.session() as session, session.begin():
        _library(session, workspace_id, row.library_id, (OWNER, EDITOR))
        session.add(row)
        session.flush()
        return _document(row)


def _document_row(session: Session, workspace_id: str, library_id: str, document_id: str,
                  need: tuple[str, ...] = ()) -> LibraryDocument:
    _library(session, workspace_id, library_id, need)
    row = session.get(LibraryDocument, document_id)
    # past its expiry date: gone for readers at once, deleted by the next sweep (expired())
    if row is None or row.library_id != library_id or lapsed(row.expires_at):
        raise Missing(f"No document with id {document_id} in library {library_id}")
    return row


def document(db: Database, workspace_id: str, library_id: str, document_id: str) -> DocumentRecord:
    with db.session() as session:
        return _document(_document_row(session, workspace_id, library_id, document_id))


def text(db: Database, workspace_id: str, library_id: str, document_id: str) -> tuple[DocumentRecord, str | None]:
    """The document and its extracted text (None until processed)."""
    with db.session() as session:
        row = _document_row(session, workspace_id, library_id, document_id)
        return _document(row), row.text


SORTS = {"created_at": LibraryDocument.created_at, "name": LibraryDocument.name, "size": LibraryDocument.size}


def documents(db: Database, workspace_id: str, library_id: str, search: str | None, page: int, page_size: int,
              sort_by: str, descending: bool) -> tuple[list[DocumentRecord], int]:
    where = [LibraryDocument.library_id == library_id, unexpired(LibraryDocument.expires_at)]
    if search:
        where.append(func.lower(LibraryDocument.name).contains(search.lower(), autoescape=True))
    column = SORTS[sort_by]
    with db.session() as session:
        _library(session, workspace_id, library_id)
        total = session.scalar(select(func.count()).select_from(LibraryDocument).where(*where)) or 0
        rows = session.scalars(select(LibraryDocument).where(*where)
                               .order_by(column.desc() if descending else column.asc(), LibraryDocument.id)
                               .offset(page * page_size).limit(page_size))
        return [_document(r) for r in rows], int(total)


def change_document(db: Database, workspace_id: str, library_id: str, document_id: str,
                    fields: dict[str, Any]) -> DocumentRecord:
    with db.session() as session, session.begin():
        row = _document_row(session, workspace_id, library_id, document_id, (OWNER, EDITOR))
        for name, value in fields.items():
            setattr(row, name, json.dumps(value) if name == "attributes" and value is not None else value)
        return _document(row)


def remove_document(db: Database, workspace_id: str, library_id: str, document_id: str) -> None:
    with db.session() as session, session.begin():
        row = _document_row(session, workspace_id, library_id, document_id, (OWNER, EDITOR))
        session.execute(delete(LibraryChunk).where(LibraryChunk.document_id == row.id))
        session.execute(delete(DocumentLink).where(DocumentLink.document_id == row.id))
        session.delete(row)


def requeue(db: Database, workspace_id: str, library_id: str, document_id: str) -> None:
    """Processes the document again (reprocess)."""
    with db.session() as session, session.begin():
        row = _document_row(session, workspace_id, library_id, document_id, (OWNER, EDITOR))
        row.status, row.error, row.lease_until = "todo", None, None


def add_link(db: Database, workspace_id: str, library_id: str, document_id: str, token_sha256: str, kind: str,
             expires_at: datetime) -> None:
    with db.session() as session, session.begin():
        _document_row(session, workspace_id, library_id, document_id)
        session.add(DocumentLink(token_sha256=token_sha256, document_id=document_id, kind=kind,
                                 expires_at=expires_at))


def follow_link(db: Database, token_sha256: str, now: datetime) -> tuple[DocumentRecord, str, str | None] | None:
    """The document a link leads to, the link's kind and the document's text; None for a
    link unknown or expired."""
    with db.session() as session:
        link = session.get(DocumentLink, token_sha256)
        if link is None or lapsed(link.expires_at, now):
            return None
        row = session.get(LibraryDocument, link.document_id)
        if row is None:
            return None
        return _document(row), link.kind, row.text


# -- processing -----------------------------------------------------------------------------
def claim(db: Database, holder: str, now: datetime, lease_until: datetime) -> DocumentRecord | None:
    """Takes the oldest document waiting to be processed for `holder` until `lease_until`:
    one to do, or one whose processor's lease lapsed (or whose retry time came). None when
    there is none."""
    left = LibraryDocument.status.in_(CLAIMABLE[1:]) & (LibraryDocument.lease_until < now)  # its lease lapsed
    with db.session() as session, session.begin():
        for row in session.scalars(select(LibraryDocument).where(or_(LibraryDocument.status == "todo", left))
                                   .order_by(LibraryDocument.created_at).limit(5)):
            taken = session.execute(update(LibraryDocument)
                                    .where(LibraryDocument.id == row.id, LibraryDocument.status == row.status,
                                           or_(LibraryDocument.lease_until.is_(None),
                                               LibraryDocument.lease_until < now))
                                    .values(status="in_progress", holder=holder, lease_until=lease_until)
                                    .execution_options(synchronize_session=False))
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                session.refresh(row)
                return _document(row)
    return None


def release(db: Database, holder: str) -> int:
    """Gives back the documents `holder` was processing (it restarted after kill -9, or is
    stopping), for whoever claims next; returns how many."""
    with db.session() as session, session.begin():
        result = session.execute(update(LibraryDocument)
                                 .where(LibraryDocument.status == "in_progress", LibraryDocument.holder == holder)
                                 .values(status="todo", holder=None, lease_until=None)
                                 .execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]


def finish(db: Database, document_id: str, lease_until: datetime, text: str, pages: int | None,
           chunks: list[tuple[str, bytes]], usage: usage_store.Usage,
           also: Callable[[Connection, str, list[bytes]], None] | None = None) -> bool:
    """Stores a processed document's text and chunks in place of any earlier ones, with the
    usage record of embedding them (one transaction), if this server still holds its lease;
    says whether it did. `also` writes more of the chunks in the same transaction (pgvector)."""
    with db.session() as session, session.begin():
        row = session.get(LibraryDocument, document_id, with_for_update=True)
        if row is None or row.status != "in_progress" or aware(row.lease_until) != lease_until:
            return False
        session.execute(delete(LibraryChunk).where(LibraryChunk.document_id == document_id))
        session.add_all(LibraryChunk(document_id=document_id, position=i, library_id=row.library_id, text=chunk,
                                     vector=vector) for i, (chunk, vector) in enumerate(chunks))
        row.status, row.error, row.text, row.pages = "done", None, text, pages
        row.tokens, row.processed_at, row.lease_until = usage.prompt_tokens, datetime.now(UTC), None
        session.flush()
        if also is not None:
            also(session.connection(), document_id, [vector for _, vector in chunks])
        usage_store.record_in(db, session.connection(), usage)
        return True


def set_status(db: Database, document_id: str, lease_until: datetime, status: str, error: str | None,
               retry_at: datetime | None, now: datetime) -> None:
    """A claimed document failed (error) or must wait (waiting_for_capacity, until `retry_at`)."""
    with db.session() as session, session.begin():
        row = session.get(LibraryDocument, document_id, with_for_update=True)
        if row is None or aware(row.lease_until) != lease_until:
            return
        row.status, row.error, row.lease_until = status, error, retry_at
        if status == "error":
            row.processed_at = now


def expired(db: Database, now: datetime) -> list[str]:
    """Deletes the documents whose expiry date has passed, and the links that expired;
    returns the documents' ids."""
    with db.session() as session, session.begin():
        session.execute(delete(DocumentLink).where(DocumentLink.expires_at < now))
        ids = list(session.scalars(select(LibraryDocument.id).where(LibraryDocument.expires_at < now)))
        if ids:
            session.execute(delete(DocumentLink).where(DocumentLink.document_id.in_(ids)))
            session.execute(delete(LibraryChunk).where(LibraryChunk.document_id.in_(ids)))
            session.execute(delete(LibraryDocument).where(LibraryDocument.id.in_(ids)))
        return ids


def chunk_size(db: Database, library_id: str) -> int | None:
    with db.session() as session:
        return session.scalar(select(Library.chunk_size).where(Library.id == library_id))


def seen(db: Database, workspace_id: str, library_ids: list[str]) -> list[str]:
    """Those of `library_ids` the workspace sees (others are skipped: one deleted or
    unshared since an agent named it)."""
    with db.session() as session:
        out = []
        for library_id in library_ids:
            try:
                out.append(_library(session, workspace_id, library_id)[0].id)
            except Missing:
                continue
        return out


def chunks(db: Database, workspace_id: str, library_ids: list[str]) -> list[ChunkHit]:
    """Every chunk of the libraries the workspace sees among `library_ids`."""
    return chunks_of(db, seen(db, workspace_id, library_ids))


def chunks_of(db: Database, visible_ids: list[str]) -> list[ChunkHit]:
    """Every current chunk of these libraries, already checked with seen()."""
    with db.session() as session:
        rows = session.execute(select(LibraryChunk.document_id, LibraryDocument.name, LibraryChunk.position,
                                      LibraryChunk.text, LibraryChunk.vector)
                               .join(LibraryDocument, LibraryDocument.id == LibraryChunk.document_id)
                               .where(LibraryChunk.library_id.in_(visible_ids), unexpired(LibraryDocument.expires_at)))
        return [ChunkHit(*r) for r in rows]
