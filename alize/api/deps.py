from typing import Annotated

from fastapi import Depends, Header, Request

from alize.services.platform import Platform
from alize.store.keys import KeyInfo


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> KeyInfo:
    return await get_platform(request).auth.authenticate(authorization)


PlatformDep = Annotated[Platform, Depends(get_platform)]
KeyDep = Annotated[KeyInfo, Depends(require_key)]


async def cache_scope(request: Request, key: Annotated[KeyInfo, Depends(require_key)]) -> str | None:
    """The prefix-cache scope of the authenticated caller (its key, unless configured)."""
    return get_platform(request).cache_scope(key.id)


ScopeDep = Annotated[str | None, Depends(cache_scope)]
