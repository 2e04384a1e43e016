"""Agents (/v1/agents, /v1/agents/completions): what clients send. Tools stay dicts here:
the service checks each by its type, and names what this server cannot offer."""

from typing import Annotated, Any, Literal

from pydantic import Field

from alize.protocol.chat import ChatCompletionRequest, Prediction, ResponseFormat
from alize.protocol.common import MaxTokens, Metadata, Penalty, Request, Seed, Stop, TopP

AgentTemperature = Annotated[float | None, Field(default=None, ge=0, le=1)]


class CompletionArgs(Request):
    """An agent's sampling settings (Mistral's white-list of chat completion arguments)."""

    stop: Stop = None
    presence_penalty: Penalty = None
    frequency_penalty: Penalty = None
    temperature: AgentTemperature = None
    top_p: TopP = None
    max_tokens: MaxTokens = None
    random_seed: Seed = None
    prediction: Prediction | None = None
    response_format: ResponseFormat | None = None
    tool_choice: Literal["auto", "none", "any", "required"] = "auto"
    reasoning_effort: Literal["none", "high"] | None = None


class AgentFields(Request):
    """What an agent's versions hold, every field optional (an update names what changes)."""

    model: str | None = None
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    completion_args: CompletionArgs | None = None
    guardrails: list[dict[str, Any]] | None = None
    handoffs: list[str] | None = Field(default=None, min_length=1)
    metadata: Metadata = None
    version_message: str | None = Field(default=None, max_length=500)
    deployment_chat: bool | None = None


class CreateAgentRequest(AgentFields):
    model: str
    name: str


class AgentsCompletionRequest(ChatCompletionRequest):
    """A chat completion with an agent: its model, instructions, tools and completion_args,
    the request's own arguments winning over the agent's."""

    agent_id: str
    model: str = ""  # the agent's
