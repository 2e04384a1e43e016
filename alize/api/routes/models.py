from fastapi import APIRouter
from fastapi.responses import JSONResponse

from alize.api.deps import KeyDep, PlatformDep
from alize.api.errors import error_response
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
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok", "models": [e.id for e in platform.hub.registry.entries()]})


@router.get("/ready")
async def ready(platform: PlatformDep) -> JSONResponse:
    """Readiness: 200 when this server should take traffic; 503 saying why not."""
    reasons = await platform.not_ready()
    if reasons:
        return error_response(503, "Not ready: " + "; ".join(reasons), "not_ready")
    return JSONResponse({"status": "ready", "models": [m.id for m in platform.hub.registry.models()]})
