from typing import Annotated

from fastapi import Depends, Header, Request

from alize.api.metering import call_of
from alize.errors import AlizeError
from alize.services.metering import Call
from alize.services.platform import Platform
from alize.store.accounts import KeyInfo


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> KeyInfo:
    return await get_platform(request).auth.authenticate(authorization)


async def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> KeyInfo:
    return await get_platform(request).auth.authenticate_admin(authorization)


MAX_PAGE = 1_000_000  # page * page_size must stay a 64-bit offset

PlatformDep = Annotated[Platform, Depends(get_platform)]
KeyDep = Annotated[KeyInfo, Depends(require_key)]
AdminDep = Annotated[KeyInfo, Depends(require_admin)]


async def metered_call(request: Request, key: KeyDep) -> Call:
    """The request's metered call, now knowing who asks (and whose prefix cache it may use).
    A model route the metering middleware does not know is a bug, refused rather than run
    unmetered (create_app also checks the route table at start-up)."""
    call = call_of(request.scope)
    if call is None:
        raise AlizeError(f"{request.method} {request.url.path} is not a metered endpoint")
    call.key = key
    call.cache_scope = get_platform(request).cache_scope(key.id)
    return call


CallDep = Annotated[Call, Depends(metered_call)]
