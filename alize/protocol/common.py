from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class Request(BaseModel):
    # Unknown fields are ignored, not rejected: OpenAI clients send fields the Mistral
    # API lacks (CONFORMANCE.md section 9), and code written for either must run.
    model_config = ConfigDict(extra="ignore")


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(Request):
    include_usage: bool | None = None


Stop = str | list[str] | None
Temperature = Annotated[float | None, Field(default=None, ge=0, le=2)]
TopP = Annotated[float | None, Field(default=None, ge=0, le=1)]
Penalty = Annotated[float | None, Field(default=None, ge=-2, le=2)]
MaxTokens = Annotated[int | None, Field(default=None, ge=0)]
Seed = Annotated[int | None, Field(default=None, ge=0, le=2**63 - 1)]
LogitBias = dict[str, Annotated[float, Field(ge=-100, le=100)]] | None
Metadata = dict[str, Any] | None


class PromptTokensDetails(Response):
    cached_tokens: int = 0


class CompletionTokensDetails(Response):
    """Predicted outputs (OpenAI's fields): drafted tokens of the prediction the answer kept,
    and those it did not (computed, then dropped; not billed)."""

    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class UsageInfo(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()
    completion_tokens_details: CompletionTokensDetails = CompletionTokensDetails()
