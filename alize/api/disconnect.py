"""A non-streamed answer is worth nothing once its client has gone: stop generating it.

Streams are cancelled by Starlette when the client leaves; a plain request is not (nobody
reads the connection while the handler runs). Here the handler's work races the
connection's http.disconnect: if the client leaves first, the work is cancelled (which
aborts its sequences in the engine) and ClientGone tells the metering middleware to
record the request as cut by the client (499), with the tokens generated so far."""

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if not task.done():  # the client left first: wait for the cancellation to finish
        with suppress(asyncio.CancelledError):
            await task
        raise ClientGone()
    return task.result()
