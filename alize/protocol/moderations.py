"""Moderation and classification (/v1/moderations, /v1/chat/moderations,
/v1/classifications, /v1/chat/classifications): what clients send."""

from typing import Any

from pydantic import Field

from alize.protocol.common import Metadata, Request


class ModerationRequest(Request):
    model: str
    input: str | list[str] = Field(min_length=1)
    metadata: Metadata = None


class ChatModerationRequest(Request):
    """A conversation (a list of messages) or several (a list of lists)."""

    model: str
    input: list[dict[str, Any]] | list[list[dict[str, Any]]] = Field(min_length=1)


class ClassificationRequest(ModerationRequest):
    pass


class InstructRequest(Request):
    messages: list[dict[str, Any]] = Field(min_length=1)


class ChatClassificationRequest(Request):
    """A conversation ({messages}) or several."""

    model: str
    input: InstructRequest | list[InstructRequest]
