"""Helpers for the platform tests: keys through the admin API, usage rows from the store."""

import asyncio
from typing import Any

import httpx
from sqlalchemy import select

from alize.store.db import Database
from alize.store.tables import UsageRecord
from tests.server import Server

EOS_BAN = {"2": -100, "0": -100}  # SmolLM2's end tokens: every request generates max_tokens


def create_key(server: Server, **fields: Any) -> dict[str, Any]:
    with server.client(server.admin_key) as admin:
        r = admin.post("/admin/v1/keys", json={"name": "t", **fields})
    assert r.status_code == 201, r.text
    return r.json()


def usage_rows(database_url: str, **where: Any) -> list[UsageRecord]:
    db = Database(database_url)
    try:
        with db.session() as session:
            query = select(UsageRecord)
            for column, value in where.items():
                query = query.where(getattr(UsageRecord, column) == value)
            return list(session.scalars(query))
    finally:
        db.close()


def sqlite_url(server: Server) -> str:
    return f"sqlite:///{server.data_dir / 'alize.db'}"


async def post_many(urls_and_keys: list[tuple[str, str]], path: str, bodies: list[dict[str, Any]],
                    concurrency: int = 50) -> list[httpx.Response]:
    """POSTs every body at once (bounded by `concurrency`), the i-th to urls_and_keys[i % len]."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=180, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i: int, body: dict[str, Any]) -> httpx.Response:
            url, key = urls_and_keys[i % len(urls_and_keys)]
            async with gate:
                return await client.post(url + path, json=body, headers={"Authorization": f"Bearer {key}"})

        return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
