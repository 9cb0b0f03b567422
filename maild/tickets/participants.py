"""Who is on a ticket: its customer and sub-customers (CC). Shared by the pipeline and maildctl."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.mail.addresses import base_address, normalize
from maild.storage.models import Agent, Contact, DeskAddress, Participant, Ticket

MAX_CC = 10


class NotAddable(ValueError):
    """This address cannot be a sub-customer; the message says why."""


def find_contact(session: Session, email: str) -> Contact | None:
    return session.scalars(select(Contact).where(Contact.email == normalize(email))).first()


def get_or_create_contact(session: Session, email: str, display_name: str = "") -> Contact:
    """One contact per address, case-insensitive; a display name fills an empty one, never overwrites."""
    email = normalize(email)
    contact = find_contact(session, email)
    if contact is None:
        contact = Contact(email=email, display_name=display_name[:200])
        session.add(contact)
        session.flush()
    elif display_name and not contact.display_name:
        contact.display_name = display_name[:200]
    return contact


def is_participant(ticket: Ticket, email: str) -> bool:
    return any(p.contact.email == normalize(email) for p in ticket.participants)


def check_customer_address(session: Session, email: str) -> None:
    """Raise NotAddable when `email` belongs to the helpdesk itself: a desk address or an agent."""
    if session.scalars(select(DeskAddress.id).where(DeskAddress.address == base_address(email))).first():
        raise NotAddable(f"{email} is a desk address")
    if session.scalars(select(Agent.id).where(Agent.email == email)).first():
        raise NotAddable(f"{email} is an agent")


def add_cc(session: Session, ticket: Ticket, email: str, display_name: str = "") -> Participant:
    """Make `email` a sub-customer; raises NotAddable for desk addresses, agents, the cap, or duplicates."""
    email = normalize(email)
    check_customer_address(session, email)
    if is_participant(ticket, email):
        raise NotAddable(f"{email} is on {ticket.number} already")
    if sum(1 for p in ticket.participants if p.role == "cc") >= MAX_CC:
        raise NotAddable(f"{ticket.number} has the most sub-customers allowed ({MAX_CC})")
    participant = Participant(contact=get_or_create_contact(session, email, display_name), role="cc")
    ticket.participants.append(participant)
    session.flush()
    return participant


def remove_cc(session: Session, ticket: Ticket, email: str) -> None:
    email = normalize(email)
    for participant in ticket.participants:
        if participant.contact.email == email:
            if participant.role != "cc":
                raise NotAddable(f"{email} is the customer of {ticket.number}, not a sub-customer")
            ticket.participants.remove(participant)
            session.flush()
            return
    raise NotAddable(f"{email} is not on {ticket.number}")


def customer_recipients(ticket: Ticket) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """(To, Cc) of customer-visible mail: the customer, then the sub-customers."""
    customer = ticket.customer
    ccs = [(p.contact.display_name, p.contact.email) for p in ticket.participants if p.role == "cc"]
    return (customer.display_name, customer.email), ccs


def agent_answered(ticket: Ticket) -> bool:
    """Whether an agent's reply was relayed to the customers of `ticket` (a message of kind "agent")."""
    return any(m.kind == "agent" for m in ticket.messages)


def automatic_recipients(ticket: Ticket) -> tuple[tuple[str, str], list[tuple[str, str]]]:
    """(To, Cc) of automatic mail (auto-reply, reminders, closing notices): the customer alone until an
    agent has answered the ticket, then the sub-customers too. Anyone may put ten addresses in Cc: until
    a person at the desk has taken up the ticket, its automatic mail must not go to third parties."""
    customer, ccs = customer_recipients(ticket)
    return customer, ccs if agent_answered(ticket) else []
