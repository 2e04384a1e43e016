"""Who is calling: bearer secrets checked against the hashed keys in the store."""

import asyncio

from alize.errors import Unauthorized
from alize.store import keys
from alize.store.db import Database
from alize.store.keys import KeyInfo


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
        key = await asyncio.to_thread(keys.authenticate, self.db, secret)
        if key is None:
            raise Unauthorized("Unauthorized: the API key is not valid")
        return key
