"""Who is calling: bearer secrets checked against the hashed keys in the store, on
every request (a revoked key is refused at once, by every replica)."""

import asyncio

from alize.errors import Forbidden, Unauthorized
from alize.store import accounts
from alize.store.accounts import KeyInfo, utcnow
from alize.store.db import Database


def check_usable(key: KeyInfo) -> KeyInfo:
    """The key, unless it has been revoked or has expired (then a 401 saying which)."""
    if key.revoked_at is not None:
        raise Unauthorized("Unauthorized: the API key has been revoked")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise Unauthorized("Unauthorized: the API key has expired")
    return key


class AuthService:
    def __init__(self, db: Database):
        self.db = db

    async def authenticate(self, authorization: str | None) -> KeyInfo:
        if not authorization:
            raise Unauthorized("Unauthorized: no API key given (Authorization: Bearer <key>)")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("Unauthorized: use the Authorization header 'Bearer <key>'")
        key = await asyncio.to_thread(accounts.find_key, self.db, secret)
        if key is None:
            raise Unauthorized("Unauthorized: the API key is not valid")
        return check_usable(key)

    async def authenticate_admin(self, authorization: str | None) -> KeyInfo:
        key = await self.authenticate(authorization)
        if not key.is_admin:
            raise Forbidden("This endpoint needs an admin key (alize keys create --admin)")
        return key
