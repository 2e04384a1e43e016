from fastapi import APIRouter
from fastapi.responses import JSONResponse

from alize.api.deps import KeyDep, PlatformDep
from alize.protocol.embeddings import EmbeddingRequest

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, key: KeyDep, platform: PlatformDep) -> JSONResponse:
    result = await platform.embeddings.create(body)
    return JSONResponse(result.model_dump(mode="json"))
