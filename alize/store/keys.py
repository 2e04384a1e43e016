"""API keys: created with a random secret shown once, stored as a sha256 hash."""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from alize.store.db import Database
from alize.store.tables import ApiKey

KEY_PREFIX = "alz-"
PREFIX_LENGTH = 12


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    prefix: str


def hash_secret(secret: str) -> str:
    # The secret has 240 bits of entropy, so one round of sha256 is enough; a slow
    # password hash would only cost latency on every request.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(db: Database, name: str) -> tuple[KeyInfo, str]:
    """Creates a key; returns its info and its secret (which is not kept)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(30)
    row = ApiKey(id=str(uuid.uuid4()), name=name, prefix=secret[:PREFIX_LENGTH],
                 secret_hash=hash_secret(secret), created_at=datetime.now(UTC))
    with db.session() as session, session.begin():
        session.add(row)
    return KeyInfo(row.id, row.name, row.prefix), secret


def authenticate(db: Database, secret: str) -> KeyInfo | None:
    digest = hash_secret(secret)
    with db.session() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.secret_hash == digest)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, digest):
        return None
    return KeyInfo(row.id, row.name, row.prefix)


def count_keys(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(ApiKey)) or 0
