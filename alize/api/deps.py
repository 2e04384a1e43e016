from typing import Annotated

from fastapi import Depends, Header, Request

from alize.api.metering import hold_call
from alize.api.request_id import request_id_of
from alize.errors import AlizeError
from alize.services.admin import AdminView
from alize.services.metering import Call, endpoint_of
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


def admin_view(request: Request, admin: AdminDep) -> AdminView:
    return get_platform(request).admin_view(admin)


AdminViewDep = Annotated[AdminView, Depends(admin_view)]


async def metered_call(request: Request, key: KeyDep) -> Call:
    """The request's metered call, made here once the key is known: who asks, whose prefix
    cache it may use, the endpoint its usage record names. A model route the metering
    middleware does not know is a bug, refused rather than run unmetered (create_app also
    checks the route table at start-up)."""
    endpoint = endpoint_of(request.scope.get("path", ""))
    platform = get_platform(request)
    call = platform.open_call(endpoint or "", key, request_id_of(request.scope),
                              request.headers.get("traceparent")) if endpoint else None
    if call is None or request.method != "POST" or not hold_call(request.scope, call):
        raise AlizeError(f"{request.method} {request.url.path} is not a metered endpoint")
    return call


CallDep = Annotated[Call, Depends(metered_call)]
