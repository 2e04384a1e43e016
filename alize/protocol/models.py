from typing import Literal

from pydantic import Field

from alize.protocol.common import Response

CAPABILITY_FLAGS = (
    "completion_chat", "function_calling", "completion_fim", "fine_tuning", "vision", "ocr",
    "classification", "moderation", "audio", "audio_transcription",
)


class ModelCapabilities(Response):
    completion_chat: bool = False
    function_calling: bool = False
    completion_fim: bool = False
    fine_tuning: bool = False
    vision: bool = False
    ocr: bool = False
    classification: bool = False
    moderation: bool = False
    audio: bool = False
    audio_transcription: bool = False


class ModelCard(Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "alize"
    capabilities: ModelCapabilities
    name: str | None = None
    description: str | None = None
    max_context_length: int
    aliases: list[str] = Field(default_factory=list)
    deprecation: str | None = None
    deprecation_replacement_model: str | None = None
    default_model_temperature: float | None = None
    type: Literal["base"] = "base"


class ModelList(Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]
