"""Adding and changing agents (maildctl agent add|set). maildctl audits them (agent_add, agent_set): these
return what changed for it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from maild.storage.models import Agent, Desk


def add_agent(session: Session, email: str, name: str, display_name: str | None, desks: list[Desk]) -> Agent:
    agent = Agent(email=email, name=name, display_name=display_name or "", desks=desks)
    session.add(agent)
    return agent


def update_agent(agent: Agent, name: str, display_name: str | None, desks: list[Desk]) -> list[str]:
    """`agent add --update` on an existing agent: the name, the display name if given, the desks added
    (none taken away); what changed, for the admin."""
    changes = []
    if agent.name != name:
        changes.append(f"name {agent.name!r} → {name!r}")
        agent.name = name
    if display_name is not None and agent.display_name != display_name:
        changes.append(f"display name {agent.display_name!r} → {display_name!r}")
        agent.display_name = display_name
    added = [desk for desk in desks if desk not in agent.desks]
    if added:
        agent.desks.extend(added)
        changes.append(f"desks + {', '.join(d.name for d in added)}")
    return changes


def set_agent(
    agent: Agent,
    *,
    name: str | None,
    display_name: str | None,
    active: bool | None,
    desks: list[Desk] | None,
) -> list[str]:
    """`agent set`: what is given replaces what the agent had; what changed, for the admin."""
    changes = []
    if name is not None:
        agent.name = name
        changes.append(f"name {name!r}")
    if display_name is not None:
        agent.display_name = display_name
        changes.append(f"display name {display_name!r}")
    if active is not None:
        agent.active = active
        changes.append("active" if active else "inactive")
    if desks is not None:
        agent.desks = desks
        changes.append(f"desks {', '.join(d.name for d in desks)}")
    return changes
