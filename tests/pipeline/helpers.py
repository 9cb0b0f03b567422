"""Shared helpers for the pipeline tests: desks and agents in the database, delivery of raw bytes through
the real spool and runner, and inline mails in the style of the mail clients customers use.

Every mail is built here as raw bytes the way its client writes it (header order, Message-ID shape,
charset, transfer encoding, reply prefix, Outlook's Thread-Index), so the stages see what they see in
production and not what `email.message.EmailMessage` would produce.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import quopri
from collections.abc import Sequence
from email.header import Header
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.addresses import normalize
from maild.mail.tokens import load_secret, note_address, reply_address
from maild.outbound.outgoing import AGENT_ONLY_TEMPLATES
from maild.pipeline.runner import Result, process
from maild.storage.db import transaction
from maild.storage.models import Agent, Desk, DeskAddress, Message, OutboxMessage, SpoolEntry, Ticket
from maild.storage.spool import record_received, write_raw

NOW = dt.datetime(2026, 3, 7, 9, 30, tzinfo=dt.UTC)
SUPPORT = "support@example.com"
SALES = "sales@example.com"
SUP_PATTERN = "SUP-{{yy}}-{{mm}}-{{nr-m}}"
SALES_PATTERN = "SALES-{{nr}}"
CUSTOMER = ("Alice Example", "alice@customer.example")

# The families whose habits differ where threading and parsing care (see `client_mail`).
CLIENTS = ("outlook", "gmail", "apple", "thunderbird")
REPLY_PREFIX = {"outlook": "AW:", "gmail": "Re:", "apple": "Re:", "thunderbird": "Re:"}

_serial = itertools.count(1)


# --- database -------------------------------------------------------------------------------------


def make_desk(
    factory: sessionmaker[Session],
    name: str,
    addresses: Sequence[str],
    pattern: str,
    *,
    auto_reply: bool = True,
    timezone: str = "UTC",
) -> Desk:
    with transaction(factory) as session:
        desk = Desk(name=name, pattern=pattern, timezone=timezone, auto_reply=auto_reply)
        desk.addresses = [DeskAddress(address=normalize(a)) for a in addresses]
        session.add(desk)
    return desk


def make_agent(factory: sessionmaker[Session], email: str, name: str, desk_names: Sequence[str]) -> None:
    with transaction(factory) as session:
        desks = list(session.scalars(select(Desk).where(Desk.name.in_(desk_names))))
        session.add(Agent(email=normalize(email), name=name, desks=desks))


def deliver(
    factory: sessionmaker[Session], cfg: Config, raw: bytes, recipient: str = "", now: dt.datetime = NOW
) -> Result:
    """What every ingress does: raw bytes durable, a 'received' row committed, then the pipeline."""
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(factory) as session:
        spool_id = record_received(session, digest, len(raw), normalize(recipient), "pipe").id
    return process(factory, cfg, spool_id, now)


def agent_address(
    factory: sessionmaker[Session], cfg: Config, number: str, agent_email: str, *, note: bool = False
) -> str:
    """The signed address an agent's notices on ticket `number` carry (Reply-To, or the note address)."""
    with factory() as session:
        t = ticket(session, number)
        agent = session.scalars(select(Agent).where(Agent.email == normalize(agent_email))).one()
        make = note_address if note else reply_address
        return make(load_secret(cfg.data_dir), t.desk.primary_address, t.id, agent.id)


def tickets(session: Session) -> list[Ticket]:
    return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def ticket(session: Session, number: str) -> Ticket:
    return session.scalars(select(Ticket).where(Ticket.number == number)).one()


def messages(session: Session) -> list[Message]:
    return list(session.scalars(select(Message).order_by(Message.id)))


def outbox(session: Session, *, agents: bool = False) -> list[OutboxMessage]:
    """The outbox, oldest first; without `agents`, only mail to customers (agent notifications, which
    go to every desk agent on each customer mail, are tested in tests/test_agent_notifications.py)."""
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if not agents:
        query = query.where(OutboxMessage.template.not_in(AGENT_ONLY_TEMPLATES))
    return list(session.scalars(query))


def spool(session: Session) -> list[SpoolEntry]:
    return list(session.scalars(select(SpoolEntry).order_by(SpoolEntry.id)))


# --- mail builders --------------------------------------------------------------------------------


def crlf(text: str) -> bytes:
    """A mail as written on the wire: CRLF line ends, 8-bit bytes as UTF-8."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def mail(
    *,
    sender: str = "Alice Example <alice@customer.example>",
    to: str = SUPPORT,
    subject: str = "Printer on fire",
    body: str = "Hello,\n\nthe printer on floor 2 is on fire.\n\nAlice\n",
    message_id: str | None = "<first@customer.example>",
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A plain, minimal text/plain mail; `extra` headers go on top (like trace headers an MTA adds)."""
    lines = [f"{name}: {value}" for name, value in extra]
    lines += [f"From: {sender}", f"To: {to}", f"Subject: {subject}", "Date: Sat, 07 Mar 2026 09:00:00 +0000"]
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body]
    return crlf("\n".join(lines))


def client_message_id(client: str) -> str:
    n = next(_serial)
    token = hashlib.sha256(f"{client}-{n}".encode()).hexdigest()
    if client == "outlook":
        return f"<AM0PR07MB{token[:20].upper()}@AM0PR07MB{token[20:24].upper()}.eurprd07.prod.outlook.com>"
    if client == "gmail":
        return f"<CAHk{token[:40]}+{token[40:48]}@mail.gmail.com>"
    if client == "apple":
        t = token.upper()
        return f"<{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:32]}@icloud.com>"
    if client == "thunderbird":
        return f"<{token[:8]}-{token[8:12]}-{token[12:16]}-{token[16:20]}-{token[20:32]}@customer.example>"
    raise ValueError(client)


def _encoded(value: str, charset: str) -> str:
    """A header value as the client writes it: ASCII as is, otherwise RFC 2047 encoded words."""
    if value.isascii():
        return value
    return Header(value, charset).encode()


def _address(name: str, address: str, charset: str) -> str:
    if not name:
        return address
    if name.isascii():
        return f'"{name}" <{address}>' if any(c in name for c in ",.;:@") else f"{name} <{address}>"
    return f"{Header(name, charset).encode()} <{address}>"


def _thread_index(references: Sequence[str]) -> str:
    """Outlook's Thread-Index: 22 bytes for a conversation's first mail, 5 more per reply."""
    head = hashlib.sha256((references[0] if references else "new").encode()).digest()[:22]
    return base64.b64encode(head + b"\x00\x00\x00\x00\x01" * len(references)).decode()


def _qp(text: str, charset: str) -> str:
    return quopri.encodestring(text.replace("\n", "\r\n").encode(charset)).decode("ascii")


def _html(text: str) -> str:
    paragraphs = "".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in text.strip().split("\n\n"))
    return f"<html><head><meta charset=utf-8></head><body>{paragraphs}</body></html>"


def client_mail(
    client: str,
    *,
    sender: tuple[str, str] = CUSTOMER,
    to: str = SUPPORT,
    subject: str = "Printer on fire",
    body: str = "Hello,\n\nthe printer on floor 2 is on fire.\n\nAlice\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    cc: str | None = None,
    date: dt.datetime = NOW,
) -> bytes:
    """A mail as `client` writes it. A reply is a mail with `in_reply_to` (and usually `references`);
    the caller writes the reply prefix into `subject` (REPLY_PREFIX[client] is each client's own)."""
    message_id = message_id or client_message_id(client)
    name, address = sender
    head: list[str] = []
    if client == "outlook":
        # Outlook declares Latin-1 when the text fits, UTF-8 otherwise.
        charset = "iso-8859-1" if all(ord(c) < 256 for c in subject + name + body) else "utf-8"
        head += [
            f"From: {_address(name, address, charset)}",
            f"To: {to}",
            *([f"CC: {cc}"] if cc else []),
            f"Subject: {_encoded(subject, charset)}",
            f"Thread-Topic: {_encoded(subject.split(':')[-1].strip(), charset)}",
            f"Thread-Index: {_thread_index(references)}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: {message_id}",
            *([f"References: {' '.join(references)}"] if references else []),
            *([f"In-Reply-To: {in_reply_to}"] if in_reply_to else []),
            "Accept-Language: de-DE, en-US",
            "Content-Language: de-DE",
            "X-MS-Has-Attach:",
            "X-MS-TNEF-Correlator:",
            "MIME-Version: 1.0",
            'Content-Type: multipart/alternative; boundary="_000_AM0PR07MB_"',
            "",
            "--_000_AM0PR07MB_",
            f'Content-Type: text/plain; charset="{charset}"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            _qp(body, charset),
            "--_000_AM0PR07MB_",
            f'Content-Type: text/html; charset="{charset}"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            _qp(_html(body), charset),
            "--_000_AM0PR07MB_--",
            "",
        ]
    elif client == "gmail":
        charset = "utf-8"
        b64 = base64.encodebytes(body.replace("\n", "\r\n").encode()).decode()
        html64 = base64.encodebytes(f'<div dir="ltr">{_html(body)}</div>'.encode()).decode()
        head += [
            "MIME-Version: 1.0",
            *([f"References: {' '.join(references)}"] if references else []),
            *([f"In-Reply-To: {in_reply_to}"] if in_reply_to else []),
            f"From: {_address(name, address, charset)}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: {message_id}",
            f"Subject: {_encoded(subject, charset)}",
            f"To: {to}",
            *([f"Cc: {cc}"] if cc else []),
            'Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f60718"',
            "",
            "--000000000000a1b2c3d4e5f60718",
            'Content-Type: text/plain; charset="UTF-8"',
            "Content-Transfer-Encoding: base64",
            "",
            b64,
            "--000000000000a1b2c3d4e5f60718",
            'Content-Type: text/html; charset="UTF-8"',
            "Content-Transfer-Encoding: base64",
            "",
            html64,
            "--000000000000a1b2c3d4e5f60718--",
            "",
        ]
    elif client == "apple":
        charset = "utf-8"
        head += [
            "Content-Type: text/plain;\n\tcharset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.500.171.1.1\\))",
            f"Subject: {_encoded(subject, charset)}",
            f"From: {_address(name, address, charset)}",
            *([f"In-Reply-To: {in_reply_to}"] if in_reply_to else []),
            f"Date: {format_datetime(date)}",
            *([f"Cc: {cc}"] if cc else []),
            f"Message-Id: {message_id}",
            *([f"References: {' '.join(references)}"] if references else []),
            f"To: {to}",
            "X-Mailer: Apple Mail (2.3774.500.171.1.1)",
            "",
            _qp(body, charset),
        ]
    elif client == "thunderbird":
        charset = "utf-8"
        head += [
            f"Message-ID: {message_id}",
            f"Date: {format_datetime(date)}",
            "MIME-Version: 1.0",
            "User-Agent: Mozilla Thunderbird",
            f"Subject: {_encoded(subject, charset)}",
            "Content-Language: en-US",
            f"To: {to}",
            *([f"Cc: {cc}"] if cc else []),
            *([f"References: {' '.join(references)}"] if references else []),
            f"From: {_address(name, address, charset)}",
            *([f"In-Reply-To: {in_reply_to}"] if in_reply_to else []),
            "Content-Type: text/plain; charset=UTF-8; format=flowed",
            "Content-Transfer-Encoding: 8bit",
            "",
            body,
        ]
    else:
        raise ValueError(client)
    return crlf("\n".join(head))
