from fastapi import APIRouter
from fastapi.responses import JSONResponse

from alize.api.deps import KeyDep, PlatformDep
from alize.api.strict_json import StrictJSONRoute
from alize.protocol.models import ModelList

router = APIRouter(route_class=StrictJSONRoute)


@router.get("/v1/models")
async def list_models(key: KeyDep, platform: PlatformDep) -> JSONResponse:
    return JSONResponse(ModelList(data=platform.hub.cards(key.models)).model_dump(mode="json"))


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, key: KeyDep, platform: PlatformDep) -> JSONResponse:
    return JSONResponse(platform.hub.card(model_id, key.models).model_dump(mode="json"))


@router.get("/health")
async def health(platform: PlatformDep) -> JSONResponse:
    return JSONResponse({"status": "ok", "models": [e.id for e in platform.hub.registry.entries()]})
