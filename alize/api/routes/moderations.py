"""/v1/moderations, /v1/chat/moderations, /v1/classifications and /v1/chat/classifications:
texts or conversations screened by the registry's moderation model or an operator's
classifier (services/moderations.py), metered like any model request."""

from typing import Any

from fastapi import APIRouter

from alize.api.deps import CallDep, PlatformDep
from alize.api.strict_json import StrictJSONRoute
from alize.protocol.moderations import (
    ChatClassificationRequest,
    ChatModerationRequest,
    ClassificationRequest,
    ModerationRequest,
)

router = APIRouter(route_class=StrictJSONRoute)


@router.post("/v1/moderations")
async def moderate(body: ModerationRequest, call: CallDep, platform: PlatformDep) -> dict[str, Any]:
    return await platform.moderations.moderate(body, call)


@router.post("/v1/chat/moderations")
async def moderate_chat(body: ChatModerationRequest, call: CallDep, platform: PlatformDep) -> dict[str, Any]:
    return await platform.moderations.moderate_chat(body, call)


@router.post("/v1/classifications")
async def classify(body: ClassificationRequest, call: CallDep, platform: PlatformDep) -> dict[str, Any]:
    return await platform.moderations.classify(body, call)


@router.post("/v1/chat/classifications")
async def classify_chat(body: ChatClassificationRequest, call: CallDep, platform: PlatformDep) -> dict[str, Any]:
    return await platform.moderations.classify_chat(body, call)
