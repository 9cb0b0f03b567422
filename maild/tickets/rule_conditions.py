"""What a rule's conditions read (`Facts`: the ticket, the mail that triggered it, the contact) and
whether each holds. Facts are computed on first use and kept, so fifty rules on a desk cost one look at
the mail, and a condition no rule asks for (tags, the customer's earlier tickets) costs nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import cached_property
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.mail.parsed import ParsedMail
from maild.storage.models import Contact, Desk, Message, Ticket, naive_utc
from maild.tickets.business_hours import is_inside
from maild.tickets.rule_grammar import Condition, text_words
from maild.tickets.ticket_ops import tags_of

MAX_SCANNED = 100_000  # characters of a body a pattern or word search reads: the start says what it is about


class Facts:
    """What the conditions look at: a stored ticket with the message that triggered the rules (for a
    status change or a time trigger, its latest customer mail), or a mail not stored (`maildctl rule test`:
    as the new ticket it would open on the desk)."""

    def __init__(
        self,
        session: Session,
        desk: Desk,
        now: dt.datetime,
        *,
        ticket: Ticket | None = None,
        message: Message | None = None,
        mail: ParsedMail | None = None,
    ) -> None:
        self.session, self.desk, self.now = session, desk, now
        self.ticket, self.mail = ticket, mail
        self._message = message

    @cached_property
    def message(self) -> Message | None:
        if self._message is not None or self.ticket is None:
            return self._message
        latest = (
            select(Message)
            .where(Message.ticket_id == self.ticket.id, Message.kind == "customer")
            .order_by(Message.created_at.desc(), Message.id.desc())
        )
        return self.session.scalars(latest.limit(1)).first()

    @property
    def status(self) -> str:
        return self.ticket.status if self.ticket is not None else "open"

    @property
    def priority(self) -> str:
        return self.ticket.priority if self.ticket is not None else "normal"

    @property
    def category(self) -> str | None:
        category = self.ticket.category if self.ticket is not None else None
        return category.name if category is not None else None

    @cached_property
    def sender(self) -> str:
        if self.mail is not None:
            return self.mail.from_address.lower()
        if self.message is not None:
            return self.message.from_address.lower()
        return self.ticket.customer.email if self.ticket is not None else ""

    @cached_property
    def subject(self) -> str:
        source = self.mail or self.message or self.ticket
        return source.subject if source is not None else ""

    @cached_property
    def body(self) -> str:
        source = self.mail or self.message
        return (source.visible_text or source.text) if source is not None else ""

    @cached_property
    def has_attachments(self) -> bool:
        source = self.mail or self.message
        return source is not None and bool(source.attachments)

    @cached_property
    def tags(self) -> frozenset[str]:
        return frozenset(tags_of(self.session, self.ticket)) if self.ticket is not None else frozenset()

    @cached_property
    def contact(self) -> Contact | None:
        if self.ticket is not None:
            return self.ticket.customer
        return self.session.scalars(select(Contact).where(Contact.email == self.sender)).first()

    @cached_property
    def customer_known(self) -> bool:
        """Known: the customer had a ticket before this one (on any desk)."""
        contact = self.contact
        if contact is None:
            return False
        earlier = select(Ticket.id).where(Ticket.customer_id == contact.id)
        if self.ticket is not None:
            earlier = earlier.where(Ticket.id < self.ticket.id)
        return self.session.scalars(earlier.limit(1)).first() is not None

    @cached_property
    def subject_words(self) -> frozenset[str]:
        return text_words(self.subject)

    @cached_property
    def body_words(self) -> frozenset[str]:
        return text_words(self.body[:MAX_SCANNED])


def _attribute(facts: Facts, key: str) -> Any:
    contact = facts.contact
    attributes = (contact.attributes or {}) if contact is not None else {}
    return attributes.get(key)


def _within(facts: Facts, key: str, days: float) -> bool:
    """The contact's date attribute (ISO date or time) lies within the last `days` days."""
    value = _attribute(facts, key)
    if not isinstance(value, str) or not value:
        return False
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    now = naive_utc(facts.now)
    moment = naive_utc(moment)
    if len(value) == 10:  # a date alone: the whole day counts
        moment += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    return now - dt.timedelta(days=days) <= moment and moment - now < dt.timedelta(days=1)


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


_TESTS: dict[str, Callable[[Facts, Condition], bool]] = {
    "desk": lambda f, c: f.desk.name.lower() == c.value.lower(),
    "category": lambda f, c: (f.category or "none").lower() == c.value.lower(),
    "status": lambda f, c: f.status == c.value,
    "priority": lambda f, c: f.priority == c.value,
    "tag": lambda f, c: c.value in f.tags,
    "sender": lambda f, c: f.sender == c.value,
    "sender_domain": lambda f, c: _domain(f.sender) == c.value or _domain(f.sender).endswith("." + c.value),
    "customer": lambda f, c: f.customer_known == (c.value == "known"),
    "subject_contains": lambda f, c: all(w in f.subject_words for w in c.words),
    "body_contains": lambda f, c: all(w in f.body_words for w in c.words),
    "subject_matches": lambda f, c: c.pattern.search(f.subject) is not None,
    "body_matches": lambda f, c: c.pattern.search(f.body[:MAX_SCANNED]) is not None,
    "attachments": lambda f, c: f.has_attachments,
    "inside_hours": lambda f, c: is_inside(f.desk.business_hours, f.desk.timezone, f.now),
    "outside_hours": lambda f, c: not is_inside(f.desk.business_hours, f.desk.timezone, f.now),
    "contact_is": lambda f, c: str(_attribute(f, c.key) or "") == c.value,
    "contact_within": lambda f, c: _within(f, c.key, c.days),
}


def holds(facts: Facts, condition: Condition) -> bool:
    return _TESTS[condition.subject](facts, condition) != condition.negate
