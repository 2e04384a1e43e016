"""/v1/files: Mistral's Files API, scoped to the caller's workspace."""

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from alize.api.deps import MAX_PAGE, KeyDep, PlatformDep
from alize.api.strict_json import StrictJSONRoute
from alize.store.files import FileFilter, FileInfo

router = APIRouter(route_class=StrictJSONRoute)


def file_out(info: FileInfo) -> dict[str, object]:
    """Mistral's file object; with OpenAI's `status` too: a file is ready once its upload
    returns, and the openai SDK's files.wait_for_processing polls until it says so."""
    return {"id": info.id, "object": "file", "bytes": info.bytes, "created_at": int(info.created_at.timestamp()),
            "filename": info.filename, "purpose": info.purpose, "sample_type": info.sample_type,
            "source": info.source, "num_lines": info.num_lines, "mimetype": info.mimetype, "signature": info.sha256,
            "expires_at": int(info.expires_at.timestamp()) if info.expires_at else None, "visibility": "workspace",
            "status": "processed"}


@router.post("/v1/files")
async def upload_file(key: KeyDep, platform: PlatformDep, file: Annotated[UploadFile, File()],
                      purpose: Annotated[str, Form()] = "batch", expiry: Annotated[int | None, Form()] = None,
                      visibility: Annotated[Literal["workspace"], Form()] = "workspace") -> dict[str, object]:
    """`expiry`: hours until the file is deleted. `visibility`: Alizé's files belong to a
    workspace (its keys); "user" has no owner to mean here and is refused by name."""
    # the part is already spooled to disk by the multipart parser: copied from there a chunk at a time
    info = await platform.files.upload(key.workspace.id, file.filename or "", purpose, file.file, file.content_type,
                                       expiry)
    return file_out(info)


SampleType = Literal["pretrain", "instruct", "batch_request", "batch_result", "batch_error"]
Source = Literal["upload", "repository", "mistral"]


@router.get("/v1/files")
def list_files(key: KeyDep, platform: PlatformDep, page: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0,
               page_size: Annotated[int, Query(ge=1, le=1000)] = 100, include_total: bool = True,
               purpose: str | None = None, search: str | None = None,
               sample_type: Annotated[list[SampleType] | None, Query()] = None,
               source: Annotated[list[Source] | None, Query()] = None,
               mimetypes: Annotated[list[str] | None, Query()] = None,
               limit: Annotated[int | None, Query(ge=1, le=10_000)] = None, after: str | None = None,
               order: Literal["asc", "desc"] = "desc") -> dict[str, object]:
    """Mistral's pages (`page`, `page_size`) or OpenAI's cursor (`limit`, `after`, `order`),
    whichever the client sends, with OpenAI's `has_more` (its SDK pages on until it is false).
    Filters: any of the sample types, any of the sources, any of the media types."""
    size = min(limit, 1000) if limit is not None else page_size
    listing = platform.files.list(key.workspace.id, page, size, purpose, search,
                                  FileFilter(sample_type, source, mimetypes), after, order == "asc")
    data = [file_out(i) for i in listing.items]
    return {"object": "list", "data": data, "total": listing.total if include_total else None,
            "has_more": listing.has_more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


@router.get("/v1/files/{file_id}")
def retrieve_file(file_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, object]:
    return {**file_out(platform.files.get(key.workspace.id, file_id)), "deleted": False}


@router.get("/v1/files/{file_id}/content")
def file_content(file_id: str, key: KeyDep, platform: PlatformDep) -> Response:
    info, chunks = platform.files.open_content(key.workspace.id, file_id)
    return StreamingResponse(chunks, media_type="application/octet-stream",
                             headers={"Content-Length": str(info.bytes)})


@router.get("/v1/files/{file_id}/url")
def file_signed_url(file_id: str, key: KeyDep, platform: PlatformDep, request: Request,
                    expiry: int = 24) -> dict[str, str]:
    return {"url": platform.files.signed_url(key.workspace.id, file_id, expiry, str(request.base_url))}


@router.get("/v1/file-links/{token}")
def follow_file_link(token: str, platform: PlatformDep) -> Response:
    """A signed URL: no key, the token is the authority (until it expires)."""
    info, chunks = platform.files.follow(token)
    return StreamingResponse(chunks, media_type=info.mimetype or "application/octet-stream",
                             headers={"Content-Length": str(info.bytes),
                                      "Content-Disposition": _attachment(info.filename)})


def _attachment(filename: str) -> str:
    """The file's name for a browser's download, safe in a header (RFC 6266); no folders."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1] or "file"
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c != '"' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, key: KeyDep, platform: PlatformDep) -> dict[str, object]:
    platform.files.delete(key.workspace.id, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
