"""File records, always looked up within a workspace: another workspace's file does not exist."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from alize.store.accounts import aware
from alize.store.db import Database
from alize.store.tables import StoredFile


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


def _info(row: StoredFile) -> FileInfo:
    return FileInfo(row.id, row.workspace_id, row.filename, row.purpose, row.sample_type, row.source, row.bytes,
                    row.sha256, row.num_lines, row.mimetype, aware(row.created_at) or row.created_at)


def add(db: Database, info: FileInfo) -> None:
    with db.session() as session, session.begin():
        session.add(StoredFile(**info.__dict__))


def get(db: Database, workspace_id: str, file_id: str) -> FileInfo | None:
    with db.session() as session:
        row = session.get(StoredFile, file_id)
    return _info(row) if row is not None and row.workspace_id == workspace_id else None


def list_page(db: Database, workspace_id: str, page: int, page_size: int, purpose: str | None = None,
              search: str | None = None) -> tuple[list[FileInfo], int]:
    query = select(StoredFile).where(StoredFile.workspace_id == workspace_id)
    if purpose:
        query = query.where(StoredFile.purpose == purpose)
    if search:
        query = query.where(StoredFile.filename.contains(search, autoescape=True))
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(StoredFile.created_at.desc(), StoredFile.id)
                               .offset(page * page_size).limit(page_size))
        return [_info(r) for r in rows], total


def remove(db: Database, workspace_id: str, file_id: str) -> bool:
    with db.session() as session, session.begin():
        row = session.get(StoredFile, file_id)
        if row is None or row.workspace_id != workspace_id:
            return False
        session.delete(row)
        return True
