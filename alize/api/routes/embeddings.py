from fastapi import APIRouter
from fastapi.responses import JSONResponse

from alize.api.deps import CallDep, PlatformDep
from alize.api.strict_json import StrictJSONRoute
from alize.protocol.embeddings import EmbeddingRequest

router = APIRouter(route_class=StrictJSONRoute)


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, call: CallDep, platform: PlatformDep) -> JSONResponse:
    result = await platform.embeddings.create(body, call)
    return JSONResponse(result.model_dump(mode="json"))
