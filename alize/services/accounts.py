"""Managing workspaces and keys: the operations behind `alize keys|workspaces` and /admin/v1."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from alize.errors import InvalidRequest, NotFound
from alize.store import accounts, console_sessions
from alize.store.accounts import AccountError, KeyInfo, Limits, NewKey, WorkspaceInfo, utcnow
from alize.store.db import Database


class Conflict(InvalidRequest):
    status_code = 409
    type = "conflict"


# The largest values stored: per-minute limits are 32-bit columns, month totals 64-bit ones
# that must stay below the counters' "unlimited" (2**62), money in nano-euros.
MAX_LIMITS = {"rpm": 2**31 - 1, "tpm": 2**31 - 1, "monthly_tokens": 10**18}
MAX_BUDGET_EUR = Decimal(10**9)
MAX_EXPIRY_DAYS = 36_500  # a hundred years
MAX_GRACE_SECONDS = 366 * 86_400


def budget_nano(eur: float | str | Decimal | None) -> int | None:
    """Euros as exact nano-euros; None stays unlimited."""
    if eur is None:
        return None
    try:
        value = Decimal(str(eur))
    except InvalidOperation:
        raise InvalidRequest(f"budget {eur!r} is not a number of euros", param="budget_eur") from None
    if not value.is_finite() or not 0 <= value <= MAX_BUDGET_EUR:
        raise InvalidRequest(f"budget must be between 0 and {MAX_BUDGET_EUR} euros", param="budget_eur")
    return int(value * 1_000_000_000)


@dataclass
class LimitsSpec:
    """Limits as people give them: euros for the budget."""

    rpm: int | None = None
    tpm: int | None = None
    monthly_tokens: int | None = None
    budget_eur: float | str | None = None

    def limits(self) -> Limits:
        for name, most in MAX_LIMITS.items():
            value = getattr(self, name)
            if value is not None and not 0 <= value <= most:
                raise InvalidRequest(f"{name} must be between 0 and {most}", param=name)
        return Limits(self.rpm, self.tpm, self.monthly_tokens, budget_nano(self.budget_eur))


@contextmanager
def _translated() -> Iterator[None]:
    """The store's AccountError as the client should see it: 409, 404 or 400."""
    try:
        yield
    except AccountError as exc:
        message = str(exc)
        if "exists already" in message:
            raise Conflict(message) from None
        raise (InvalidRequest(message) if "revoked" in message else NotFound(message)) from None


class AccountService:
    def __init__(self, db: Database):
        self.db = db

    def create_workspace(self, name: str, limits: LimitsSpec) -> WorkspaceInfo:
        if not name.strip():
            raise InvalidRequest("a workspace needs a name", param="name")
        with _translated():
            return accounts.create_workspace(self.db, name, limits.limits())

    def get_workspace(self, ref: str) -> WorkspaceInfo:
        with _translated():
            return accounts.get_workspace(self.db, ref)

    def list_workspaces(self) -> list[WorkspaceInfo]:
        accounts.ensure_default_workspace(self.db)
        return accounts.list_workspaces(self.db)

    def set_workspace_limits(self, ref: str, changes: dict[str, object]) -> WorkspaceInfo:
        """Changes only the limits named; a value of None removes that limit."""
        spec = LimitsSpec(**changes)  # type: ignore[arg-type]
        limits = spec.limits()
        stored = {"budget_eur": "monthly_budget_nano"}
        with _translated():
            return accounts.update_workspace_limits(
                self.db, ref, {stored.get(k, k): getattr(limits, stored.get(k, k)) for k in changes})

    def create_key(self, name: str, workspace: str = accounts.DEFAULT_WORKSPACE, models: list[str] | None = None,
                   expires_in_days: float | None = None, limits: LimitsSpec | None = None,
                   admin: bool = False, admin_scoped: bool = False) -> tuple[KeyInfo, str]:
        """A new key; an admin key is an admin of every workspace, or with admin_scoped of
        its own workspace only."""
        if not name.strip():
            raise InvalidRequest("a key needs a name", param="name")
        if expires_in_days is not None and not 0 < expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidRequest(f"expires_in_days must be more than 0 and at most {MAX_EXPIRY_DAYS}",
                                 param="expires_in_days")
        expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days is not None else None
        spec = NewKey(name, workspace, tuple(m.strip() for m in models or [] if m.strip()), expires,
                      (limits or LimitsSpec()).limits(), admin, admin_scoped)
        with _translated():
            return accounts.create_key(self.db, spec)

    def list_keys(self, workspace: str | None = None) -> list[KeyInfo]:
        with _translated():
            return accounts.list_keys(self.db, workspace)

    def find_key(self, ref: str) -> KeyInfo:
        """A key by its id, its name or its prefix; a name or prefix that several keys share
        is an error listing them."""
        keys = accounts.list_keys(self.db)
        prefix = ref.rstrip("…")  # as `alize keys list` shows it
        for match in ([k for k in keys if k.id == ref], [k for k in keys if k.name == ref],
                      [k for k in keys if len(prefix) >= 6 and k.prefix.startswith(prefix)]):
            if len(match) == 1:
                return match[0]
            if len(match) > 1:
                listed = ", ".join(f"{k.id} ({k.name}, {k.prefix}…, workspace {k.workspace.name})" for k in match)
                raise InvalidRequest(f"{ref!r} names {len(match)} keys: {listed}; give the id", param="key")
        raise NotFound(f"no key has the id, name or prefix {ref!r}")

    def get_key(self, key_id: str) -> KeyInfo:
        with _translated():
            return accounts.get_key(self.db, key_id)

    def revoke_key(self, key_id: str) -> KeyInfo:
        """Revokes the key at once, for every replica, and ends its console sessions."""
        with _translated():
            key = accounts.revoke_key(self.db, key_id)
        console_sessions.end_for_key(self.db, key_id)
        return key

    def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[KeyInfo, str]:
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidRequest(f"grace must be between 0 and {MAX_GRACE_SECONDS} seconds", param="grace_seconds")
        with _translated():
            return accounts.rotate_key(self.db, key_id, timedelta(seconds=grace_seconds))
