"""Guardrails (`guardrails` of chat completions, agents and conversations): a moderation
model screens the input before the model sees it, and a category scoring over its threshold
blocks the request. Unknown fields are refused here, unlike elsewhere: a misspelt safety
setting must not pass as no setting."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

Threshold = float | None


class ModerationGuard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str | None = None  # the moderation model; omitted: the registry's mistral-moderation-latest
    custom_category_thresholds: dict[str, Threshold] | None = None
    ignore_other_categories: bool = False
    action: Literal["none", "block"] = "none"


class GuardrailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    block_on_error: bool = False
    moderation_llm_v1: ModerationGuard | None = None
    moderation_llm_v2: ModerationGuard | None = None


Guardrails = list[GuardrailConfig] | None
