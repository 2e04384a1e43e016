"""Signing in to the console with an admin key: sessions that end when idle, when old,
on sign-out, and as soon as the key is revoked, expires or stops being an admin key."""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from alize.errors import Forbidden, Unauthorized
from alize.services.auth import check_usable
from alize.store import accounts, console_sessions
from alize.store.accounts import KeyInfo, utcnow
from alize.store.db import Database

TOUCH_EVERY = timedelta(seconds=30)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class SignedIn:
    token: str  # the cookie's value
    key: KeyInfo
    csrf: str
    created_at: datetime


class SessionService:
    def __init__(self, db: Database, idle: timedelta, lifetime: timedelta):
        self.db = db
        self.idle = idle
        self.lifetime = lifetime

    async def sign_in(self, secret: str) -> SignedIn:
        """A new session for an admin key; a 401 or 403 saying why not."""
        secret = secret.strip()
        key = await asyncio.to_thread(accounts.find_key, self.db, secret) if secret else None
        if key is None:
            raise Unauthorized("That is not a valid key")
        check_usable(key)
        if not key.is_admin:
            raise Forbidden("Only an admin key can sign in to the console (alize keys create --admin); "
                            "this is an API key")
        now = utcnow()
        await asyncio.to_thread(console_sessions.end_idle, self.db, now - self.idle)
        token, row = await asyncio.to_thread(console_sessions.create, self.db, key.id, now)
        return SignedIn(token, key, row.csrf, row.created_at)

    async def resume(self, token: str) -> SignedIn | None:
        """The session of a cookie, if it is still good: not idle too long, not too old, its
        key still a usable admin key (read now, so revocation takes effect at once)."""
        row = await asyncio.to_thread(console_sessions.get, self.db, token) if token else None
        if row is None:
            return None
        now = utcnow()
        key = None
        if now - row.last_seen_at <= self.idle and now - row.created_at <= self.lifetime:
            key = await asyncio.to_thread(self._usable_admin, row.key_id)
        if key is None:
            await asyncio.to_thread(console_sessions.end, self.db, token)
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            await asyncio.to_thread(console_sessions.touch, self.db, token, now)
        return SignedIn(token, key, row.csrf, row.created_at)

    def _usable_admin(self, key_id: str) -> KeyInfo | None:
        try:
            key = check_usable(accounts.get_key(self.db, key_id))
        except (accounts.AccountError, Unauthorized):
            return None
        return key if key.is_admin else None

    async def sign_out(self, token: str) -> None:
        await asyncio.to_thread(console_sessions.end, self.db, token)
