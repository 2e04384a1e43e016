"""/v1/libraries: Mistral's document libraries (beta), seen by the caller's workspace (its
own, and those shared with it). Uploads are processed in the background; their status
says when a document is searchable."""

import asyncio
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response

from alize.api.deps import MAX_PAGE, KeyDep, PlatformDep
from alize.api.strict_json import StrictJSONRoute
from alize.protocol.libraries import (
    CreateLibraryRequest,
    SharingDelete,
    SharingRequest,
    UpdateDocumentRequest,
    UpdateLibraryRequest,
    set_fields,
)

router = APIRouter(route_class=StrictJSONRoute)
PageSize = Annotated[int, Query(ge=1, le=100)]
DOCUMENT = "/v1/libraries/{library_id}/documents/{document_id}"


@router.get("/v1/libraries")
def list_libraries(key: KeyDep, platform: PlatformDep, page_size: PageSize = 100, page_token: str | None = None,
                   page: Annotated[int | None, Query(ge=0, le=MAX_PAGE)] = None, search: str | None = None,
                   filter_owned_by_me: bool | None = None) -> dict[str, Any]:
    return platform.libraries.list(key, page_size, page_token, page, search)


@router.post("/v1/libraries", status_code=201)
def create_library(body: CreateLibraryRequest, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.create(key, body.name, body.description, body.chunk_size, body.owner_type)


@router.get("/v1/libraries/{library_id}")
def get_library(library_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.get(key, library_id)


@router.put("/v1/libraries/{library_id}")
@router.patch("/v1/libraries/{library_id}")
def update_library(library_id: str, body: UpdateLibraryRequest, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.update(key, library_id, set_fields(body, nullable=("description",)))


@router.delete("/v1/libraries/{library_id}")
async def delete_library(library_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return await platform.libraries.delete(key, library_id)


# -- sharing ---------------------------------------------------------------------------------
@router.get("/v1/libraries/{library_id}/share")
def list_shares(library_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.shares(key, library_id)


@router.put("/v1/libraries/{library_id}/share")
def share_library(library_id: str, body: SharingRequest, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.share(key, library_id, body.share_with_type, body.share_with_uuid, body.level)


@router.delete("/v1/libraries/{library_id}/share")
def unshare_library(library_id: str, body: SharingDelete, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.share(key, library_id, body.share_with_type, body.share_with_uuid, None)


# -- documents --------------------------------------------------------------------------------
@router.post("/v1/libraries/{library_id}/documents", status_code=201)
async def upload_document(library_id: str, key: KeyDep, platform: PlatformDep,
                          file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    # the part is already spooled to disk by the multipart parser: copied from there a chunk at a time
    return await platform.libraries.upload(key, library_id, file.filename or "", file.content_type, file.file)


@router.get("/v1/libraries/{library_id}/documents")
def list_documents(library_id: str, key: KeyDep, platform: PlatformDep, search: str | None = None,
                   page_size: PageSize = 100, page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
                   filters_attributes: str | None = None, sort_by: str = "created_at",
                   sort_order: str = "desc") -> dict[str, Any]:
    return platform.libraries.documents(key, library_id, search, page, page_size, sort_by, sort_order)


@router.get(DOCUMENT)
def get_document(library_id: str, document_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.document(key, library_id, document_id)


@router.put(DOCUMENT)
@router.patch(DOCUMENT)
def update_document(library_id: str, document_id: str, body: UpdateDocumentRequest, key: KeyDep,
                    platform: PlatformDep) -> dict[str, Any]:
    fields = set_fields(body, nullable=("attributes", "expires_at"))
    if fields.get("expires_at") is not None and fields["expires_at"].tzinfo is None:
        fields["expires_at"] = fields["expires_at"].replace(tzinfo=UTC)  # a time without a zone is UTC
    return platform.libraries.update_document(key, library_id, document_id, fields)


@router.delete(DOCUMENT, status_code=204)
async def delete_document(library_id: str, document_id: str, key: KeyDep, platform: PlatformDep) -> Response:
    await platform.libraries.delete_document(key, library_id, document_id)
    return Response(status_code=204)


@router.get(DOCUMENT + "/text_content")
def document_text(library_id: str, document_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.text(key, library_id, document_id)


@router.get(DOCUMENT + "/status")
def document_status(library_id: str, document_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, Any]:
    return platform.libraries.status(key, library_id, document_id)


@router.post(DOCUMENT + "/reprocess", status_code=204)
async def reprocess_document(library_id: str, document_id: str, key: KeyDep, platform: PlatformDep) -> Response:
    await asyncio.to_thread(platform.libraries.reprocess, key, library_id, document_id)
    return Response(status_code=204)


@router.get(DOCUMENT + "/signed-url")
def document_signed_url(library_id: str, document_id: str, key: KeyDep, platform: PlatformDep,
                        request: Request) -> str:
    return platform.libraries.signed_url(key, library_id, document_id, "original", str(request.base_url))


@router.get(DOCUMENT + "/extracted-text-signed-url")
def document_text_signed_url(library_id: str, document_id: str, key: KeyDep, platform: PlatformDep,
                             request: Request) -> str:
    return platform.libraries.signed_url(key, library_id, document_id, "text", str(request.base_url))


@router.get("/v1/document-links/{token}")
def follow_document_link(token: str, platform: PlatformDep) -> Response:
    """A signed URL: no key, the token is the authority (30 minutes)."""
    media_type, content = platform.libraries.follow(token)
    return Response(content, media_type=media_type)
