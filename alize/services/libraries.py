"""Document libraries as a use case: libraries per workspace, shared with other workspaces
as Viewer or Editor; documents uploaded into them (text, Markdown, HTML, CSV, JSON, PDF),
kept as blobs and processed in the background (services/library_worker.py) into chunks
with their embeddings, which the document_library tool searches (services/retrieval.py)."""

import asyncio
import base64
import binascii
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, BinaryIO, TypeVar

from alize.errors import Forbidden, InvalidRequest, NotFound
from alize.services.document_text import kind_of
from alize.services.files import counted_put
from alize.store import libraries as store
from alize.store.accounts import AccountError, KeyInfo, get_workspace, hash_secret
from alize.store.blobs import BlobStore
from alize.store.db import Database
from alize.store.libraries import Denied, DocumentRecord, LibraryRecord, Missing
from alize.store.tables import LibraryDocument

# Alizé has no organisations: one id stands for the installation where the spec wants one.
ORG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:alize:organisation"))
ROLES = (store.VIEWER, store.EDITOR)
LINK_LIFETIME = timedelta(minutes=30)  # as Mistral's signed URLs
T = TypeVar("T")


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="microseconds")


def library_out(record: LibraryRecord) -> dict[str, Any]:
    return {"id": record.id, "name": record.name, "description": record.description,
            "created_at": _time(record.created_at), "updated_at": _time(record.updated_at),
            "owner_id": record.workspace_id, "owner_type": "Workspace", "total_size": record.total_size,
            "nb_documents": record.documents, "chunk_size": record.chunk_size, "emoji": None,
            "generated_description": None, "generated_name": None, "explicit_user_members_count": None,
            "explicit_workspace_members_count": record.shared_with, "org_sharing_role": None}


def document_out(record: DocumentRecord) -> dict[str, Any]:
    return {"id": record.id, "library_id": record.library_id, "hash": record.sha256, "mime_type": record.mime_type,
            "extension": record.extension, "size": record.size, "name": record.name, "summary": None,
            "created_at": _time(record.created_at), "last_processed_at": _time(record.processed_at),
            "number_of_pages": record.pages, "process_status": record.status, "processing_status": record.status,
            "uploaded_by_id": record.key_id, "uploaded_by_type": "ApiKey", "tokens_processing_main_content": None,
            "tokens_processing_summary": None, "tokens_processing_total": record.tokens, "url": None,
            "attributes": record.attributes, "expires_at": _time(record.expires_at)}


def _translated(work: Callable[[], T], param: str = "library_id") -> T:
    """A store call, its exceptions as the API's: a library or document not seen is a 404,
    a role that may not do this a 403."""
    try:
        return work()
    except Missing as exc:
        raise NotFound(str(exc), param=param) from exc
    except Denied as exc:
        raise Forbidden(str(exc), param=param) from exc


class LibraryService:
    def __init__(self, db: Database, blobs: BlobStore, max_bytes: int, on_upload: Callable[[], None] = lambda: None):
        self.db = db
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.on_upload = on_upload  # wakes the document worker

    # -- libraries -----------------------------------------------------------------------
    def create(self, key: KeyInfo, name: str, description: str | None, chunk_size: int | None,
               owner_type: str | None) -> dict[str, Any]:
        if owner_type == "User":
            raise InvalidRequest("libraries belong to workspaces here: Alizé has no user-owned libraries "
                                 "(leave owner_type unset, or Workspace)", param="owner_type")
        if not name.strip():
            raise InvalidRequest("a library needs a name", param="name")
        record = store.create(self.db, key.workspace.id, str(uuid.uuid4()), name, description, chunk_size,
                              datetime.now(UTC))
        return library_out(record)

    def get(self, key: KeyInfo, library_id: str) -> dict[str, Any]:
        return library_out(_translated(lambda: store.get(self.db, key.workspace.id, library_id)))

    def list(self, key: KeyInfo, page_size: int, page_token: str | None, page: int | None,
             search: str | None) -> dict[str, Any]:
        """One page, by continuation token (or, deprecated, page number with pagination)."""
        offset = _offset(page_token) if page_token else (page or 0) * page_size
        records, total = store.visible(self.db, key.workspace.id, search, offset, page_size)
        more = offset + len(records) < total
        out: dict[str, Any] = {"data": [library_out(r) for r in records],
                               "next_page_token": _token(offset + len(records)) if more else None}
        if page_token is None and page is not None:
            out["pagination"] = _pagination(total, page, page_size)
        return out

    def update(self, key: KeyInfo, library_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        if "name" in fields and not (fields["name"] or "").strip():
            raise InvalidRequest("a library needs a name", param="name")
        record = _translated(lambda: store.change(self.db, key.workspace.id, library_id, fields, datetime.now(UTC)))
        return library_out(record)

    async def delete(self, key: KeyInfo, library_id: str) -> dict[str, Any]:
        record, documents = await asyncio.to_thread(
            _translated, lambda: store.remove(self.db, key.workspace.id, library_id))
        for document_id in documents:
            await asyncio.to_thread(self.blobs.delete, document_id)
        return library_out(record)

    # -- sharing ---------------------------------------------------------------------------
    def shares(self, key: KeyInfo, library_id: str) -> dict[str, Any]:
        pairs = _translated(lambda: store.shares(self.db, key.workspace.id, library_id))
        return {"data": [_sharing(library_id, workspace, role) for workspace, role in pairs]}

    def share(self, key: KeyInfo, library_id: str, kind: str, workspace_ref: str, level: str | None) -> dict[str, Any]:
        """Gives (level) or takes away (None) another workspace's access. Only workspaces:
        Alizé has no users or organisations to share with."""
        if kind != "Workspace":
            raise InvalidRequest(f"libraries are shared with workspaces here (share_with_type Workspace), not "
                                 f"with a {kind}", param="share_with_type")
        if level is not None and level not in ROLES:
            raise InvalidRequest(f"level must be one of {', '.join(ROLES)}", param="level")
        try:
            workspace = get_workspace(self.db, workspace_ref)
        except AccountError:
            raise NotFound(f"No workspace with id {workspace_ref}", param="share_with_uuid") from None
        record = _translated(lambda: store.get(self.db, key.workspace.id, library_id))
        if record.role != store.OWNER:
            raise Forbidden(f"Only the workspace that owns library {library_id} shares it", param="library_id")
        if workspace.id == key.workspace.id:
            raise InvalidRequest("a library's own workspace owns it already", param="share_with_uuid")
        _translated(lambda: store.share(self.db, key.workspace.id, library_id, workspace.id, level))
        return _sharing(library_id, workspace.id, level or store.VIEWER)

    # -- documents -------------------------------------------------------------------------
    async def upload(self, key: KeyInfo, library_id: str, filename: str, content_type: str | None,
                     source: BinaryIO) -> dict[str, Any]:
        """Stores the bytes (a chunk at a time, at most max_bytes) and queues the document."""
        if not filename:
            raise InvalidRequest("the file part needs a filename", param="file")
        extension, media = kind_of(filename, content_type)
        await asyncio.to_thread(_translated, lambda: store.get(self.db, key.workspace.id, library_id))
        document_id = str(uuid.uuid4())
        size, sha256 = await counted_put(self.blobs, document_id, source, self.max_bytes)
        row = LibraryDocument(id=document_id, library_id=library_id, key_id=key.id, name=filename[:500],
                              mime_type=media, extension=extension, size=size, sha256=sha256, status="todo",
                              tokens=0, created_at=datetime.now(UTC))
        try:
            record = await asyncio.to_thread(_translated, lambda: store.add_document(self.db, key.workspace.id, row))
        except Exception:
            await asyncio.to_thread(self.blobs.delete, document_id)  # no orphan bytes
            raise
        self.on_upload()
        return document_out(record)

    def documents(self, key: KeyInfo, library_id: str, search: str | None, page: int, page_size: int,
                  sort_by: str, sort_order: str) -> dict[str, Any]:
        if sort_by not in store.SORTS:
            raise InvalidRequest(f"sort_by must be one of {', '.join(store.SORTS)}", param="sort_by")
        if sort_order not in ("asc", "desc"):
            raise InvalidRequest("sort_order must be asc or desc", param="sort_order")
        records, total = _translated(lambda: store.documents(self.db, key.workspace.id, library_id, search, page,
                                                             page_size, sort_by, sort_order == "desc"))
        return {"pagination": _pagination(total, page, page_size), "data": [document_out(r) for r in records]}

    def document(self, key: KeyInfo, library_id: str, document_id: str) -> dict[str, Any]:
        return document_out(self._document(key, library_id, document_id))

    def _document(self, key: KeyInfo, library_id: str, document_id: str) -> DocumentRecord:
        return _translated(lambda: store.document(self.db, key.workspace.id, library_id, document_id))

    def status(self, key: KeyInfo, library_id: str, document_id: str) -> dict[str, Any]:
        record = self._document(key, library_id, document_id)
        return {"document_id": record.id, "process_status": record.status, "processing_status": record.status}

    def text(self, key: KeyInfo, library_id: str, document_id: str) -> dict[str, Any]:
        record, text = _translated(lambda: store.text(self.db, key.workspace.id, library_id, document_id))
        if text is None:
            detail = f": {record.error}" if record.error else ""
            raise InvalidRequest(f"Document {document_id} has no text yet (process_status {record.status}{detail})",
                                 param="document_id")
        return {"text": text}

    def update_document(self, key: KeyInfo, library_id: str, document_id: str,
                        fields: dict[str, Any]) -> dict[str, Any]:
        if "name" in fields and not (fields["name"] or "").strip():
            raise InvalidRequest("a document needs a name", param="name")
        return document_out(_translated(lambda: store.change_document(self.db, key.workspace.id, library_id,
                                                                       document_id, fields)))

    async def delete_document(self, key: KeyInfo, library_id: str, document_id: str) -> None:
        await asyncio.to_thread(_translated, lambda: store.remove_document(self.db, key.workspace.id, library_id,
                                                                          document_id))
        await asyncio.to_thread(self.blobs.delete, document_id)

    def reprocess(self, key: KeyInfo, library_id: str, document_id: str) -> None:
        _translated(lambda: store.requeue(self.db, key.workspace.id, library_id, document_id))
        self.on_upload()

    # -- signed URLs ------------------------------------------------------------------------
    def signed_url(self, key: KeyInfo, library_id: str, document_id: str, kind: str, base_url: str) -> str:
        """A link to the document's bytes ("original") or extracted text ("text") that anyone
        with it may read for LINK_LIFETIME; only its token's hash is kept."""
        record = self._document(key, library_id, document_id)
        if kind == "text" and record.status != "done":
            raise InvalidRequest(f"Document {document_id} has no text yet (process_status {record.status})",
                                 param="document_id")
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + LINK_LIFETIME
        _translated(lambda: store.add_link(self.db, key.workspace.id, library_id, document_id, hash_secret(token), kind,
                                           expires))
        return f"{base_url.rstrip('/')}/v1/document-links/{token}"

    def follow(self, token: str) -> tuple[str, bytes | str]:
        """(media type, content) of a signed link: the document's bytes, or its text."""
        found = store.follow_link(self.db, hash_secret(token), datetime.now(UTC))
        if found is None:
            raise NotFound("This link is unknown or has expired")
        record, kind, text = found
        if kind == "text":
            return "text/plain; charset=utf-8", text or ""
        return record.mime_type or "application/octet-stream", b"".join(self.blobs.chunks(record.id))


def check_libraries(db: Database, workspace_id: str, tools: list[dict[str, Any]]) -> None:
    """A 404 naming any library of a document_library tool that the workspace cannot see."""
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") == "document_library":
            for library_id in tool.get("library_ids") or []:
                _translated(partial(store.get, db, workspace_id, library_id), param=f"tools[{i}].library_ids")


def _sharing(library_id: str, workspace_id: str, role: str) -> dict[str, Any]:
    return {"library_id": library_id, "user_id": None, "org_id": ORG_ID, "role": role,
            "share_with_type": "Workspace", "share_with_uuid": workspace_id}


def _pagination(total: int, page: int, page_size: int) -> dict[str, Any]:
    return {"total_items": total, "total_pages": -(-total // page_size), "current_page": page,
            "page_size": page_size, "has_more": (page + 1) * page_size < total}


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


MAX_OFFSET = 2**62  # a page token's offset stays a 64-bit SQL OFFSET


def _offset(token: str) -> int:
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "offset" and number.isascii() and number.isdigit() and int(number) <= MAX_OFFSET:
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidRequest("page_token is not a token this server gave", param="page_token")
