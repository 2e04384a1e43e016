"""Handoffs between agents in a conversation: an agent's `handoffs` are offered to its model
as function tools (`transfer_to_<name>`, described by the agent they lead to). When the
model calls one and the turn's handoff_execution is `server` (the default), the conversation
records an `agent.handoff` entry and the next agent answers the same conversation, with its
own model, instructions and tools; with `client`, the call comes back as a `function.call`
entry like any other, for the client to act on. A turn hands off at most MAX_HANDOFFS times."""

import re
from dataclasses import dataclass
from typing import Any

from alize.store.agents import AgentRecord

MAX_HANDOFFS = 3
PREFIX = "transfer_to_"


@dataclass(frozen=True)
class Handoff:
    tool: str  # the function the model calls
    agent: AgentRecord  # the agent it leads to (its current version)

    @property
    def name(self) -> str:
        return str(self.agent.config.get("name") or self.agent.id)

    def function(self) -> dict[str, Any]:
        about = self.agent.config.get("description") or self.agent.config.get("instructions") or ""
        return {"type": "function", "function": {
            "name": self.tool, "parameters": {"type": "object", "properties": {}},
            "description": f"Hand the conversation over to the agent {self.name}" + (f": {about}" if about else ".")}}


def handoffs_of(agents: list[AgentRecord]) -> dict[str, Handoff]:
    """The handoff tools of an agent, by function name (unique, within the 64 characters a
    function name may have)."""
    out: dict[str, Handoff] = {}
    for agent in agents:
        slug = re.sub(r"[^a-zA-Z0-9_-]+", "_", str(agent.config.get("name") or agent.id)).strip("_").lower()
        tool = PREFIX + (slug or agent.id)[:64 - len(PREFIX) - 3]
        while tool in out:
            tool += "_"
        out[tool] = Handoff(tool, agent)
    return out


def handoff_entry(entry_id: str, previous: AgentRecord, handoff: Handoff, now: str) -> dict[str, Any]:
    return {"object": "entry", "type": "agent.handoff", "id": entry_id, "previous_agent_id": previous.id,
            "previous_agent_name": str(previous.config.get("name") or previous.id),
            "next_agent_id": handoff.agent.id, "next_agent_name": handoff.name, "created_at": now,
            "completed_at": now}
