"""Workspaces and API keys. Secrets are random, shown once, stored as sha256 hashes."""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from alize.store.db import Database
from alize.store.tables import ApiKey, Workspace

KEY_PREFIX = "alz-"
PREFIX_LENGTH = 12
DEFAULT_WORKSPACE = "default"


class AccountError(Exception):
    """A name or id that does not exist, or a name already taken."""


@dataclass(frozen=True)
class Limits:
    """None means unlimited. The budget is in nano-euros (1e-9 EUR), an exact integer."""

    rpm: int | None = None
    tpm: int | None = None
    monthly_tokens: int | None = None
    monthly_budget_nano: int | None = None

    FIELDS = ("rpm", "tpm", "monthly_tokens", "monthly_budget_nano")

    @classmethod
    def of(cls, row: ApiKey | Workspace) -> "Limits":
        return cls(row.rpm, row.tpm, row.monthly_tokens, row.monthly_budget_nano)


@dataclass(frozen=True)
class WorkspaceInfo:
    id: str
    name: str
    created_at: datetime
    limits: Limits


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    prefix: str
    workspace: WorkspaceInfo
    created_at: datetime
    limits: Limits = field(default_factory=Limits)
    models: tuple[str, ...] = ()  # empty: every model
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    is_admin: bool = False
    previous_valid_until: datetime | None = None
    admin_scoped: bool = False  # an admin of its own workspace only

    @property
    def admin_workspace_id(self) -> str | None:
        """The one workspace this admin key manages; None: every workspace (or not an admin)."""
        return self.workspace.id if self.is_admin and self.admin_scoped else None


def hash_secret(secret: str) -> str:
    # The secret has 240 bits of entropy, so one round of sha256 is enough; a slow
    # password hash would only cost latency on every request.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def lapsed(expires_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether an expiry date (None: never) has come, as read back from either database."""
    moment = aware(expires_at)
    return moment is not None and moment <= (now or datetime.now(UTC))


def unexpired(expires_at: InstrumentedAttribute[datetime | None]) -> ColumnElement[bool]:
    """Rows whose expiry column (None: never) has not come yet, as a condition."""
    return or_(expires_at.is_(None), expires_at > datetime.now(UTC))


def _workspace_info(row: Workspace) -> WorkspaceInfo:
    return WorkspaceInfo(row.id, row.name, aware(row.created_at), Limits.of(row))


def _key_info(row: ApiKey, workspace: Workspace) -> KeyInfo:
    models = tuple(m for m in (row.allowed_models or "").split(",") if m)
    return KeyInfo(row.id, row.name, row.prefix, _workspace_info(workspace), aware(row.created_at),
                   Limits.of(row), models, aware(row.expires_at), aware(row.revoked_at), row.is_admin,
                   aware(row.previous_valid_until), bool(row.admin_scoped))


def _set_limits(row: ApiKey | Workspace, limits: Limits) -> None:
    for name in Limits.FIELDS:
        setattr(row, name, getattr(limits, name))


# -- workspaces ---------------------------------------------------------------
def _workspace_row(session: Session, ref: str) -> Workspace:
    row = session.scalars(select(Workspace).where(or_(Workspace.id == ref, Workspace.name == ref))).first()
    if row is None:
        raise AccountError(f"no workspace named {ref!r}")
    return row


def create_workspace(db: Database, name: str, limits: Limits = Limits()) -> WorkspaceInfo:
    row = Workspace(id=str(uuid.uuid4()), name=name, created_at=utcnow())
    _set_limits(row, limits)
    try:
        with db.session() as session, session.begin():
            session.add(row)
    except IntegrityError:
        raise AccountError(f"a workspace named {name!r} exists already") from None
    return _workspace_info(row)


def get_workspace(db: Database, ref: str) -> WorkspaceInfo:
    with db.session() as session:
        return _workspace_info(_workspace_row(session, ref))


def list_workspaces(db: Database) -> list[WorkspaceInfo]:
    with db.session() as session:
        return [_workspace_info(r) for r in session.scalars(select(Workspace).order_by(Workspace.created_at))]


def update_workspace_limits(db: Database, ref: str, changes: dict[str, int | None]) -> WorkspaceInfo:
    with db.session() as session, session.begin():
        row = _workspace_row(session, ref)
        for name, value in changes.items():
            setattr(row, name, value)
        return _workspace_info(row)


def ensure_default_workspace(db: Database) -> WorkspaceInfo:
    try:
        return get_workspace(db, DEFAULT_WORKSPACE)
    except AccountError:
        try:
            return create_workspace(db, DEFAULT_WORKSPACE)
        except AccountError:  # created meanwhile by another process
            return get_workspace(db, DEFAULT_WORKSPACE)


# -- keys ---------------------------------------------------------------------
@dataclass(frozen=True)
class NewKey:
    name: str
    workspace: str = DEFAULT_WORKSPACE
    models: tuple[str, ...] = ()
    expires_at: datetime | None = None
    limits: Limits = Limits()
    is_admin: bool = False
    admin_scoped: bool = False


def create_key(db: Database, spec: NewKey) -> tuple[KeyInfo, str]:
    """Creates a key; returns its info and its secret (which is not kept)."""
    if spec.workspace == DEFAULT_WORKSPACE:
        ensure_default_workspace(db)
    secret = new_secret()
    with db.session() as session, session.begin():
        workspace = _workspace_row(session, spec.workspace)
        row = ApiKey(id=str(uuid.uuid4()), name=spec.name, prefix=secret[:PREFIX_LENGTH],
                     secret_hash=hash_secret(secret), created_at=utcnow(), workspace_id=workspace.id,
                     expires_at=spec.expires_at, allowed_models=",".join(spec.models) or None,
                     is_admin=spec.is_admin, admin_scoped=spec.is_admin and spec.admin_scoped)
        _set_limits(row, spec.limits)
        session.add(row)
        return _key_info(row, workspace), secret


def _key_row(session: Session, key_id: str) -> tuple[ApiKey, Workspace]:
    found = session.execute(select(ApiKey, Workspace).join(Workspace, ApiKey.workspace_id == Workspace.id)
                            .where(ApiKey.id == key_id)).first()
    if found is None:
        raise AccountError(f"no key with id {key_id!r}")
    return found[0], found[1]


def exists(db: Database, kind: str, scope_id: str) -> bool:
    """Whether this database has the key or workspace with that id."""
    table = ApiKey if kind == "key" else Workspace
    with db.session() as session:
        return session.get(table, scope_id) is not None


def get_key(db: Database, key_id: str) -> KeyInfo:
    with db.session() as session:
        return _key_info(*_key_row(session, key_id))


def list_keys(db: Database, workspace: str | None = None) -> list[KeyInfo]:
    query = select(ApiKey, Workspace).join(Workspace, ApiKey.workspace_id == Workspace.id)
    with db.session() as session:
        if workspace is not None:
            query = query.where(ApiKey.workspace_id == _workspace_row(session, workspace).id)
        return [_key_info(k, w) for k, w in session.execute(query.order_by(ApiKey.created_at))]


def revoke_key(db: Database, key_id: str) -> KeyInfo:
    with db.session() as session, session.begin():
        row, workspace = _key_row(session, key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _key_info(row, workspace)


def rotate_key(db: Database, key_id: str, grace: timedelta) -> tuple[KeyInfo, str]:
    """A new secret for the same key (same id, limits and usage); the old secret
    keeps working for `grace`, then stops."""
    secret = new_secret()
    with db.session() as session, session.begin():
        row, workspace = _key_row(session, key_id)
        if row.revoked_at is not None:
            raise AccountError(f"key {key_id} is revoked; create a new one")
        row.previous_secret_hash = row.secret_hash if grace.total_seconds() > 0 else None
        row.previous_valid_until = utcnow() + grace if grace.total_seconds() > 0 else None
        row.secret_hash = hash_secret(secret)
        row.prefix = secret[:PREFIX_LENGTH]
        return _key_info(row, workspace), secret


def find_key(db: Database, secret: str) -> KeyInfo | None:
    """The key a secret belongs to (current secret, or a rotated one still in its grace
    period), whatever its state: the caller checks revocation and expiry."""
    digest = hash_secret(secret)
    query = (select(ApiKey, Workspace).join(Workspace, ApiKey.workspace_id == Workspace.id)
             .where(or_(ApiKey.secret_hash == digest, ApiKey.previous_secret_hash == digest)))
    with db.session() as session:
        found = session.execute(query).first()
    if found is None:
        return None
    row, workspace = found
    if hmac.compare_digest(row.secret_hash, digest):
        return _key_info(row, workspace)
    until = aware(row.previous_valid_until)
    if row.previous_secret_hash and hmac.compare_digest(row.previous_secret_hash, digest) \
            and until is not None and until > utcnow():
        return _key_info(row, workspace)
    return None


def count_keys(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(ApiKey)) or 0
