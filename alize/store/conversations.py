"""Conversations and their entries, always looked up within a workspace: another
workspace's conversation does not exist. Entries are kept in order, each as the JSON the
API shows."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from alize.store.accounts import aware
from alize.store.db import Database
from alize.store.tables import Conversation, ConversationEntry


class Missing(Exception):
    """No such conversation in the workspace, or no such entry in it."""


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def _row(session: Session, workspace_id: str, conversation_id: str) -> Conversation:
    row = session.get(Conversation, conversation_id)
    if row is None or row.workspace_id != workspace_id:
        raise Missing(f"No conversation with id {conversation_id}")
    return row


def _record(row: Conversation) -> ConversationRecord:
    return ConversationRecord(row.id, json.loads(row.settings), aware(row.created_at) or row.created_at,
                              aware(row.updated_at) or row.updated_at)


def _add_entries(session: Session, conversation_id: str, entries: list[dict[str, Any]]) -> None:
    last = session.scalar(select(func.max(ConversationEntry.position))
                          .where(ConversationEntry.conversation_id == conversation_id))
    start = -1 if last is None else last
    for offset, entry in enumerate(entries, 1):
        session.add(ConversationEntry(conversation_id=conversation_id, position=start + offset, id=entry["id"],
                                      entry=json.dumps(entry)))


def create(db: Database, workspace_id: str, conversation_id: str, settings: dict[str, Any],
           entries: list[dict[str, Any]], now: datetime) -> None:
    with db.session() as session, session.begin():
        session.add(Conversation(id=conversation_id, workspace_id=workspace_id, settings=json.dumps(settings),
                                 created_at=now, updated_at=now))
        session.flush()
        _add_entries(session, conversation_id, entries)


def append(db: Database, workspace_id: str, conversation_id: str, entries: list[dict[str, Any]],
           now: datetime, changed: list[dict[str, Any]] | None = None) -> None:
    """Adds `entries` after the others and stores `changed` (entries already there, found by
    id: a tool call now confirmed or denied) in the same transaction."""
    with db.session() as session, session.begin():
        row = _row(session, workspace_id, conversation_id)
        row.updated_at = now
        for entry in changed or []:
            session.execute(update(ConversationEntry).where(ConversationEntry.conversation_id == conversation_id,
                                                            ConversationEntry.id == entry["id"])
                            .values(entry=json.dumps(entry)))
        _add_entries(session, conversation_id, entries)


def get(db: Database, workspace_id: str, conversation_id: str) -> ConversationRecord:
    with db.session() as session:
        return _record(_row(session, workspace_id, conversation_id))


def entries(db: Database, workspace_id: str, conversation_id: str, through: str | None = None) -> list[dict[str, Any]]:
    """The conversation's entries in order; with `through`, up to and including that entry."""
    with db.session() as session:
        _row(session, workspace_id, conversation_id)
        rows = list(session.scalars(select(ConversationEntry).where(ConversationEntry.conversation_id ==
                                                                    conversation_id)
                                    .order_by(ConversationEntry.position)))
    out = [json.loads(r.entry) for r in rows]
    if through is None:
        return out
    ids = [e["id"] for e in out]
    if through not in ids:
        raise Missing(f"Conversation {conversation_id} has no entry {through}")
    return out[:ids.index(through) + 1]


def list_page(db: Database, workspace_id: str, page: int, page_size: int) -> list[ConversationRecord]:
    with db.session() as session:
        rows = session.scalars(select(Conversation).where(Conversation.workspace_id == workspace_id)
                               .order_by(Conversation.created_at.desc(), Conversation.id.desc())
                               .offset(page * page_size).limit(page_size))
        return [_record(r) for r in rows]


def remove(db: Database, workspace_id: str, conversation_id: str) -> None:
    with db.session() as session, session.begin():
        row = _row(session, workspace_id, conversation_id)
        session.execute(delete(ConversationEntry).where(ConversationEntry.conversation_id == row.id))
        session.delete(row)
