"""What flows through the pipeline: the context every stage reads and extends, and a stage's verdict."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.message import Message as HeaderBlock
from functools import cached_property
from typing import Any

from sqlalchemy.orm import Session

from maild.config import Config
from maild.mail.automatic import read_headers
from maild.mail.forwards import Forwarded
from maild.mail.mailparse import NotAMessage, ParsedMail
from maild.mail.tokens import ReplyTarget
from maild.storage.models import Agent, Contact, Desk, Message, OutboxMessage, SpoolEntry, Ticket, naive_utc
from maild.tickets.agent_open import Checked
from maild.tickets.command_effects import PlannedCommand
from maild.tickets.desk_commands import DeskCommand

IMPORT_INGRESS = "import"  # spool rows of `maildctl import`: history, nobody is answered or told


@dataclass(frozen=True)
class Stop:
    """A stage's decision that processing ends here, with the message's outcome and why."""

    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class BounceInfo:
    """What the bounce stage read from a delivery report (RFC 3464, or flufl.bounce's heuristics)."""

    permanent: bool  # 5.x.x / "failed"; False: 4.x.x / "delayed" (noted only)
    recipients: tuple[str, ...]  # the addresses that failed
    status: str = ""  # enhanced status code, e.g. "5.1.1" ("" when the report has none)
    diagnostic: str = ""  # the remote server's words
    outbox_id: int | None = None  # the outgoing mail it is about (VERP, else the original Message-ID)
    matched_by: str = ""  # verp | message-id | "" (unmatched)


@dataclass(frozen=True)
class BounceEffect:
    """What the writing step does for one failed address of a matched bounce (decided by bounce)."""

    address: str
    mark: bool  # a customer's address: marked bouncing (never an agent or a desk address)
    newly: bool  # it was not bouncing before: the desk's agents get the bounce_notice
    status_reason: str  # the contact's status_reason when marked
    note: str  # the system note on the ticket
    note_id: str  # the note's Message-ID (idempotence across deliveries)
    reason: str  # this address's part of the spool row's reason
    status: str = ""  # what the report says, for the bounce_notice
    diagnostic: str = ""


@dataclass(frozen=True)
class BounceVerdict:
    """A matched bounce's effects: the outgoing mail it is about and one entry per failed address."""

    row: OutboxMessage
    effects: tuple[BounceEffect, ...]


@dataclass(frozen=True)
class Refusal:
    """policy refused a new ticket: the answer to send (a desk template, or None: silently)."""

    template: str | None


@dataclass(frozen=True)
class AgentAnswer:
    """maild's answer to an agent's mail (command_errors, collision_notice), queued by notify."""

    template: str
    variables: dict[str, Any]


@dataclass
class AgentReply:
    """What the commands stage made of an authenticated agent's mail, for apply and notify."""

    text: str  # what the customer (or, for a note, the agents) read: no commands, quotes or signature
    kind: str  # "agent": relayed to the customer and sub-customers | "note": internal
    command_lines: list[str]  # the command lines as written, for the record
    status_set: bool = False  # a command set the status: apply does not make it `waiting`
    released: Message | None = None  # the held reply `#send` lets go (it is relayed instead of this mail)
    # the resolved commands, carried out by apply (maild.tickets.command_effects), merge first
    plan: tuple[PlannedCommand, ...] = ()

    @property
    def relayed(self) -> bool:
        return self.kind == "agent" and bool(self.text.strip())


@dataclass
class AgentMail:
    """agent_mail: an authenticated agent's new mail to the desk with a desk command (#to, #customer,
    #away, #back; maild.tickets.desk_commands), as checked; apply and notify carry it out."""

    agent: Agent
    command: DeskCommand | None  # None: the mail had errors (errors_text), nothing is done
    errors_text: str = ""
    opened: Checked | None = None  # #to: the ticket's customer, CCs, subject and files, checked
    text: str = ""  # #to: what the customer reads; #customer: the agent's note above the forward
    forwarded: Forwarded | None = None  # #customer: the customer's mail


@dataclass
class Context:
    session: Session
    cfg: Config
    spool: SpoolEntry
    raw: bytes
    now: dt.datetime  # aware UTC
    # maildctl explain: run every stage, write no file; the caller rolls the transaction back.
    dry_run: bool = False
    mail: ParsedMail | None = None
    # The runner's parse of the same bytes, done before the write transaction (the parse stage uses it).
    preparsed: ParsedMail | NotAMessage | None = None
    content_sha256: str = ""  # dedupe: what the mail says, beside its Message-ID
    desk: Desk | None = None
    routed_by: str = ""  # route: where the desk's address was found, e.g. "To support@example.com"
    agent: Agent | None = None  # set by identify for an authenticated agent reply
    # identify: the signed reply address among the recipients, and whether it was a note address
    reply_target: ReplyTarget | None = None
    reply_address: str = ""  # identify: the recipient address whose token verified
    to_note_address: bool = False
    agent_reply: AgentReply | None = None  # commands: set for an authenticated agent reply
    # identify: the sender is a customer or a stranger (no agent, not the desk): apply makes them a contact
    customer_sender: bool = False
    contact: Contact | None = None  # identify: the sender's existing contact; apply: created when new
    known_sender: bool = False  # identify: the contact existed before this mail
    # loop: an imported mail the desk itself sent (its old reply): stored on its ticket as the desk's answer
    desk_reply: bool = False
    ticket: Ticket | None = None
    threaded_by: str = ""  # token | references | subject | new
    thread_reference: str = ""  # thread: the Message-ID that tied the mail to its ticket, and whose it is
    redirected_from: list[str] = field(default_factory=list)  # thread: merged tickets passed on the way
    linked_ticket: Ticket | None = (
        None  # policy: the new ticket is opened in place of a follow-up to this one
    )
    notes: list[str] = field(default_factory=list)  # system notes for the ticket (why policy decided so)
    message: Message | None = None
    # autoreply: the class of automatic mail (out-of-office, auto-generated, list, challenge-response) and
    # why; such mail may join a ticket but is never answered automatically.
    automatic: str | None = None
    automatic_reason: str = ""
    spam_headers: list[str] = field(default_factory=list)  # spam: the upstream verdict headers found
    bounce: BounceInfo | None = None  # bounce: set for a delivery report
    bounce_effects: BounceVerdict | None = None  # bounce: what a matched bounce changes (apply, notify)
    # bounce: an agent whose own out-of-office reply came to a notice's return path (apply.record_stop marks
    # them away, on ctx.ticket's log)
    away_agent: Agent | None = None
    held_note: str | None = None  # identify: the note for ctx.ticket on a held agent-looking mail
    refusal: Refusal | None = None  # policy: a refused new ticket
    held_reply: str | None = None  # commands: the reply text the collision guard holds (apply stores it)
    agent_answer: AgentAnswer | None = None  # commands: maild's answer to the agent (notify queues it)
    agent_mail: AgentMail | None = None  # agent_mail: a desk command in an agent's new mail
    # automation: the desk's rules that fired on this mail's changes, what each did and what failed
    # (maild.tickets.rules_engine.firing_json), for explain
    rule_firings: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = ""
    reason: str = ""
    queued: list[OutboxMessage] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)

    @cached_property
    def headers(self) -> HeaderBlock:
        """The top-level header block as written (compat32), parsed once for every stage that reads
        headers parse does not keep (X-Loop, Auto-Submitted, X-Spam-*, Authentication-Results, …)."""
        return read_headers(self.raw)

    @property
    def now_naive(self) -> dt.datetime:
        """`now` as stored in the database (naive UTC)."""
        return naive_utc(self.now)

    def require_mail(self) -> ParsedMail:
        assert self.mail is not None, "parse runs first"
        return self.mail

    def require_desk(self) -> Desk:
        assert self.desk is not None, "route runs before this stage"
        return self.desk

    def require_agent(self) -> Agent:
        assert self.agent is not None, "only for a mail identify accepted as an agent's"
        return self.agent
