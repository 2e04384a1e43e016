"""Conversations (/v1/conversations): what clients send. Entries stay dicts here: the
service reads each by its type and names what it cannot take."""

from typing import Any, Literal

from alize.protocol.agents import CompletionArgs
from alize.protocol.common import Metadata, Request

Inputs = str | list[dict[str, Any]]


class ToolCallConfirmation(Request):
    """The client's answer to a server-side tool call that waits for it (confirmation_status
    pending): run it, or not."""
    tool_call_id: str
    confirmation: Literal["allow", "deny"]


class AppendConversationRequest(Request):
    inputs: Inputs = ""
    stream: bool | None = False
    store: bool | None = True
    handoff_execution: Literal["client", "server"] | None = "server"
    completion_args: CompletionArgs | None = None
    tool_confirmations: list[ToolCallConfirmation] | None = None


class ConversationRequest(AppendConversationRequest):
    inputs: Inputs
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    guardrails: list[dict[str, Any]] | None = None
    name: str | None = None
    description: str | None = None
    metadata: Metadata = None
    agent_id: str | None = None
    agent_version: str | int | None = None
    model: str | None = None


class RestartConversationRequest(AppendConversationRequest):
    from_entry_id: str
    guardrails: list[dict[str, Any]] | None = None
    metadata: Metadata = None
    agent_version: str | int | None = None
