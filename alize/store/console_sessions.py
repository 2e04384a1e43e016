"""Console sessions: a random token in the browser's cookie, its sha256 here, with the key
that signed in and the session's CSRF token."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update

from alize.store.accounts import aware
from alize.store.db import Database
from alize.store.tables import ConsoleSession


@dataclass(frozen=True)
class SessionRow:
    key_id: str
    csrf: str
    created_at: datetime
    last_seen_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create(db: Database, key_id: str, now: datetime) -> tuple[str, SessionRow]:
    """A new session for the key: returns the cookie's token (not kept) and the row."""
    token = secrets.token_urlsafe(32)
    row = SessionRow(key_id, secrets.token_urlsafe(32), now, now)
    with db.session() as session, session.begin():
        session.add(ConsoleSession(id=_digest(token), **row.__dict__))
    return token, row


def get(db: Database, token: str) -> SessionRow | None:
    with db.session() as session:
        row = session.get(ConsoleSession, _digest(token))
        if row is None:
            return None
        return SessionRow(row.key_id, row.csrf, aware(row.created_at), aware(row.last_seen_at))  # type: ignore[arg-type]


def touch(db: Database, token: str, now: datetime) -> None:
    with db.engine.begin() as connection:
        connection.execute(update(ConsoleSession).where(ConsoleSession.id == _digest(token)).values(last_seen_at=now))


def end(db: Database, token: str) -> None:
    with db.engine.begin() as connection:
        connection.execute(delete(ConsoleSession).where(ConsoleSession.id == _digest(token)))


def end_for_key(db: Database, key_id: str) -> None:
    with db.engine.begin() as connection:
        connection.execute(delete(ConsoleSession).where(ConsoleSession.key_id == key_id))


def end_idle(db: Database, idle_before: datetime) -> None:
    with db.engine.begin() as connection:
        connection.execute(delete(ConsoleSession).where(ConsoleSession.last_seen_at < idle_before))


