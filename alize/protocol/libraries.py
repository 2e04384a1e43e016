"""Document libraries (/v1/libraries*): what clients send."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from alize.protocol.common import Request

Name = Annotated[str, Field(min_length=1, max_length=500)]
AttributeValue = bool | int | float | str | list[str] | list[int] | list[float] | list[bool]


class CreateLibraryRequest(Request):
    name: Name
    description: str | None = None
    chunk_size: Annotated[int | None, Field(default=None, ge=256, le=32768)] = None  # characters
    owner_type: Literal["User", "Workspace"] | None = None


class UpdateLibraryRequest(Request):
    name: Name | None = None
    description: str | None = None


class UpdateDocumentRequest(Request):
    name: Name | None = None
    attributes: dict[str, AttributeValue] | None = None
    expires_at: datetime | None = None


class SharingDelete(Request):
    share_with_uuid: Annotated[str, Field(min_length=1, max_length=200)]
    share_with_type: str
    org_id: str | None = None


class SharingRequest(SharingDelete):
    level: str


def set_fields(request: Request, nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields the client set: a null clears those in `nullable`, and leaves the others."""
    given = request.model_dump(exclude_unset=True)
    return {k: v for k, v in given.items() if v is not None or k in nullable}
