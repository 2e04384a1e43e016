"""Agents, their versions and aliases, always looked up within a workspace: another
workspace's agent does not exist. Each change of configuration is a new version; the agent
row says which one is current."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from alize.store.accounts import aware
from alize.store.db import Database
from alize.store.tables import Agent, AgentAlias, AgentVersion


class Missing(Exception):
    """No such agent in the workspace, or no such version or alias of it."""


@dataclass(frozen=True)
class AgentRecord:
    id: str
    version: int  # the version shown
    current: int  # the agent's current version
    versions: list[int]
    config: dict[str, Any]
    created_at: datetime  # the agent's
    updated_at: datetime  # this version's


@dataclass(frozen=True)
class AliasRecord:
    alias: str
    version: int
    created_at: datetime
    updated_at: datetime


def _agent(session: Session, workspace_id: str, agent_id: str, for_update: bool = False) -> Agent:
    query = select(Agent).where(Agent.id == agent_id, Agent.workspace_id == workspace_id)
    row = session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        raise Missing(f"No agent with id {agent_id}")
    return row


MAX_VERSION = 2**31 - 1  # versions are 32-bit integers (INTEGER on PostgreSQL)


def _version_of(session: Session, agent: Agent, ref: int | str | None) -> int:
    """The version a reference names: a number, an alias, or None (the current one)."""
    if ref is None:
        return agent.version
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        number = int(ref)
        # a number past the column's range names no version (and must not reach the database)
        if not 0 <= number <= MAX_VERSION or session.get(AgentVersion, (agent.id, number)) is None:
            raise Missing(f"Agent {agent.id} has no version {number}")
        return number
    alias = session.get(AgentAlias, (agent.id, ref))
    if alias is None:
        raise Missing(f"Agent {agent.id} has no version or alias {ref!r}")
    return alias.version


def _record(session: Session, agent: Agent, version: int) -> AgentRecord:
    row = session.get(AgentVersion, (agent.id, version))
    assert row is not None
    versions = list(session.scalars(select(AgentVersion.version).where(AgentVersion.agent_id == agent.id)
                                    .order_by(AgentVersion.version)))
    return _made(agent, row, versions)


def _made(agent: Agent, row: AgentVersion, versions: list[int]) -> AgentRecord:
    return AgentRecord(agent.id, row.version, agent.version, versions, json.loads(row.config),
                       aware(agent.created_at) or agent.created_at, aware(row.created_at) or row.created_at)


def create(db: Database, workspace_id: str, agent_id: str, config: dict[str, Any], now: datetime) -> AgentRecord:
    with db.session() as session, session.begin():
        agent = Agent(id=agent_id, workspace_id=workspace_id, version=0, created_at=now, updated_at=now)
        session.add(agent)
        session.flush()
        session.add(AgentVersion(agent_id=agent_id, version=0, config=json.dumps(config), created_at=now))
        session.flush()
        return _record(session, agent, 0)


def get(db: Database, workspace_id: str, agent_id: str, ref: int | str | None = None) -> AgentRecord:
    with db.session() as session:
        agent = _agent(session, workspace_id, agent_id)
        return _record(session, agent, _version_of(session, agent, ref))


def list_current(db: Database, workspace_id: str) -> list[AgentRecord]:
    """Every agent of the workspace at its current version, newest first (two queries,
    whatever the number of agents)."""
    with db.session() as session:
        rows = session.execute(
            select(Agent, AgentVersion)
            .join(AgentVersion, (AgentVersion.agent_id == Agent.id) & (AgentVersion.version == Agent.version))
            .where(Agent.workspace_id == workspace_id).order_by(Agent.created_at.desc(), Agent.id.desc())).all()
        numbers: dict[str, list[int]] = {}
        for agent_id, number in session.execute(
                select(AgentVersion.agent_id, AgentVersion.version).join(Agent, Agent.id == AgentVersion.agent_id)
                .where(Agent.workspace_id == workspace_id).order_by(AgentVersion.version)):
            numbers.setdefault(agent_id, []).append(number)
    return [_made(agent, version, numbers[agent.id]) for agent, version in rows]


def add_version(db: Database, workspace_id: str, agent_id: str, change: Callable[[dict[str, Any]], dict[str, Any]],
                now: datetime) -> AgentRecord:
    """A new version, made by `change` from the current configuration, becomes current."""
    with db.session() as session, session.begin():
        agent = _agent(session, workspace_id, agent_id, for_update=True)  # one update at a time
        current = session.get(AgentVersion, (agent.id, agent.version))
        assert current is not None
        number = (session.scalar(select(func.max(AgentVersion.version))
                                 .where(AgentVersion.agent_id == agent.id)) or 0) + 1
        session.add(AgentVersion(agent_id=agent.id, version=number,
                                 config=json.dumps(change(json.loads(current.config))), created_at=now))
        agent.version, agent.updated_at = number, now
        session.flush()
        return _record(session, agent, number)


def set_version(db: Database, workspace_id: str, agent_id: str, version: int, now: datetime) -> AgentRecord:
    with db.session() as session, session.begin():
        agent = _agent(session, workspace_id, agent_id, for_update=True)
        agent.version, agent.updated_at = _version_of(session, agent, version), now
        return _record(session, agent, agent.version)


def list_versions(db: Database, workspace_id: str, agent_id: str, page: int, page_size: int) -> list[AgentRecord]:
    """The agent's versions, newest first."""
    with db.session() as session:
        agent = _agent(session, workspace_id, agent_id)
        numbers = session.scalars(select(AgentVersion.version).where(AgentVersion.agent_id == agent.id)
                                  .order_by(AgentVersion.version.desc()).offset(page * page_size).limit(page_size))
        return [_record(session, agent, number) for number in numbers]


def put_alias(db: Database, workspace_id: str, agent_id: str, alias: str, version: int, now: datetime) -> AliasRecord:
    with db.session() as session, session.begin():
        agent = _agent(session, workspace_id, agent_id, for_update=True)
        number = _version_of(session, agent, version)
        row = session.get(AgentAlias, (agent.id, alias))
        if row is None:
            row = AgentAlias(agent_id=agent.id, alias=alias, version=number, created_at=now, updated_at=now)
            session.add(row)
        else:
            row.version, row.updated_at = number, now
        session.flush()
        return _alias(row)


def _alias(row: AgentAlias) -> AliasRecord:
    return AliasRecord(row.alias, row.version, aware(row.created_at) or row.created_at,
                       aware(row.updated_at) or row.updated_at)


def aliases(db: Database, workspace_id: str, agent_id: str) -> list[AliasRecord]:
    with db.session() as session:
        agent = _agent(session, workspace_id, agent_id)
        rows = session.scalars(select(AgentAlias).where(AgentAlias.agent_id == agent.id).order_by(AgentAlias.alias))
        return [_alias(row) for row in rows]


def delete_alias(db: Database, workspace_id: str, agent_id: str, alias: str) -> None:
    with db.session() as session, session.begin():
        agent = _agent(session, workspace_id, agent_id, for_update=True)
        row = session.get(AgentAlias, (agent.id, alias))
        if row is None:
            raise Missing(f"Agent {agent_id} has no alias {alias!r}")
        session.delete(row)


def remove(db: Database, workspace_id: str, agent_id: str) -> None:
    with db.session() as session, session.begin():
        agent = _agent(session, workspace_id, agent_id, for_update=True)
        session.execute(delete(AgentAlias).where(AgentAlias.agent_id == agent.id))
        session.execute(delete(AgentVersion).where(AgentVersion.agent_id == agent.id))
        session.delete(agent)
