"""File records, always looked up within a workspace: another workspace's file does not exist."""

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, func, or_, select

from alize.store.accounts import aware, lapsed, unexpired
from alize.store.db import Database
from alize.store.tables import FileLink, StoredFile


@dataclass(frozen=True)
class FileInfo:
    id: str
    workspace_id: str
    filename: str
    purpose: str
    sample_type: str
    source: str
    bytes: int
    sha256: str
    num_lines: int | None
    mimetype: str | None
    created_at: datetime
    expires_at: datetime | None = None  # an upload's `expiry`: gone for readers then, deleted by expired()


def _info(row: StoredFile) -> FileInfo:
    return FileInfo(row.id, row.workspace_id, row.filename, row.purpose, row.sample_type, row.source, row.bytes,
                    row.sha256, row.num_lines, row.mimetype, aware(row.created_at) or row.created_at,
                    aware(row.expires_at))


def _live(row: StoredFile | None, workspace_id: str | None = None) -> bool:
    """The file exists for readers (of that workspace): not past its expiry date."""
    if row is None or (workspace_id is not None and row.workspace_id != workspace_id):
        return False
    return not lapsed(row.expires_at)


def add(db: Database, info: FileInfo) -> None:
    with db.session() as session, session.begin():
        session.add(StoredFile(**info.__dict__))


def get(db: Database, workspace_id: str, file_id: str) -> FileInfo | None:
    with db.session() as session:
        row = session.get(StoredFile, file_id)
    return _info(row) if row is not None and _live(row, workspace_id) else None


@dataclass(frozen=True)
class FileFilter:
    """A listing's filters: a file matches when its value is one of those given (None: any)."""
    sample_types: list[str] | None = None
    sources: list[str] | None = None
    mimetypes: list[str] | None = None


class FilePage(NamedTuple):
    items: list[FileInfo]
    total: int  # every file that matches
    has_more: bool  # whether more follow this page


class UnknownCursor(Exception):
    """`after` names no file of the workspace's listing."""


def list_page(db: Database, workspace_id: str, page: int, page_size: int, purpose: str | None = None,
              search: str | None = None, where: FileFilter | None = None, after: str | None = None,
              ascending: bool = False) -> FilePage:
    """A page of the workspace's files, newest first (or oldest first): the `page`-th of
    `page_size`, or with `after` (OpenAI's cursor, a file's id) the `page_size` that follow it."""
    query = select(StoredFile).where(StoredFile.workspace_id == workspace_id, unexpired(StoredFile.expires_at))
    if purpose:
        query = query.where(StoredFile.purpose == purpose)
    where = where or FileFilter()
    for column, values in ((StoredFile.sample_type, where.sample_types), (StoredFile.source, where.sources),
                           (StoredFile.mimetype, where.mimetypes)):
        if values is not None:
            query = query.where(column.in_(values))
    if search:
        query = query.where(StoredFile.filename.contains(search, autoescape=True))
    # one total order, and its reverse: (created_at, id) newest first, ties by id
    order = ((StoredFile.created_at.asc(), StoredFile.id.desc()) if ascending
             else (StoredFile.created_at.desc(), StoredFile.id.asc()))
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        if after is not None:
            mark = session.get(StoredFile, after)
            if not _live(mark, workspace_id):
                raise UnknownCursor(after)
            assert mark is not None
            later = or_(StoredFile.created_at > mark.created_at,
                        (StoredFile.created_at == mark.created_at) & (StoredFile.id < mark.id))
            earlier = or_(StoredFile.created_at < mark.created_at,
                          (StoredFile.created_at == mark.created_at) & (StoredFile.id > mark.id))
            query = query.where(later if ascending else earlier)
        else:
            query = query.offset(page * page_size)
        rows = list(session.scalars(query.order_by(*order).limit(page_size + 1)))
        return FilePage([_info(r) for r in rows[:page_size]], total, len(rows) > page_size)


def remove(db: Database, workspace_id: str, file_id: str) -> bool:
    with db.session() as session, session.begin():
        row = session.get(StoredFile, file_id)
        if not _live(row, workspace_id):
            return False
        session.delete(row)  # its links go with it (ON DELETE CASCADE)
        return True


def add_link(db: Database, workspace_id: str, file_id: str, token_sha256: str, expires_at: datetime) -> bool:
    """Records a signed link to the workspace's file; False when there is no such file."""
    with db.session() as session, session.begin():
        if not _live(session.get(StoredFile, file_id), workspace_id):
            return False
        session.add(FileLink(token_sha256=token_sha256, file_id=file_id, expires_at=expires_at))
        return True


def follow_link(db: Database, token_sha256: str, now: datetime) -> FileInfo | None:
    """The file a link leads to; None for a link unknown or expired, or a file gone."""
    with db.session() as session:
        link = session.get(FileLink, token_sha256)
        if link is None or lapsed(link.expires_at, now):
            return None
        row = session.get(StoredFile, link.file_id)
        return _info(row) if row is not None and _live(row) else None


def expired(db: Database, now: datetime) -> list[str]:
    """Deletes the files whose expiry date has passed, and the links that expired; returns
    the files' ids (their bytes are the caller's to delete)."""
    with db.session() as session, session.begin():
        session.execute(delete(FileLink).where(FileLink.expires_at < now))
        ids = list(session.scalars(select(StoredFile.id).where(StoredFile.expires_at < now)))
        if ids:  # their links go with them (ON DELETE CASCADE)
            session.execute(delete(StoredFile).where(StoredFile.id.in_(ids)))
        return ids
