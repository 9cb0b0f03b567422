"""Fill a migrated, empty maild database with a large, realistic history: N tickets, ~3N messages.

    .venv/bin/python bench/seed_scale.py DATABASE_URL [--tickets 1000000] [--seed 1]

DATABASE_URL is a sqlite:/// file or a postgresql:// URL of a database `maildctl init` (or
maild.storage.migrate.upgrade) has migrated and that has no desks yet. The shape is what a few years of
a helpdesk leave behind: four desks with different number patterns, agents on them, ~N/4 customers who
each opened several tickets (a few customers opened many), tickets spread over 24 months in every status,
1–7 messages per ticket (customer mails, agent replies, notes, system notes) chained by Message-ID and
In-Reply-To, a spool row for every mail that arrived (plus duplicates, bounces and blocked mail that made
no message), an outbox row for each auto-reply, agent notice and relayed agent reply, audit rows for
creations and status changes, attachments on a tenth of the customer mails, and the number counters
raised past every seeded number so new tickets continue the sequences.

Rows are written in chunks by SQLAlchemy Core executemany (SQLite, with durability relaxed for the load)
or COPY (PostgreSQL); ids are assigned here, so foreign keys need no round trip, and PostgreSQL's id
sequences are moved past them at the end. Timing goes to stderr; the row counts to stdout as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import JSON, Connection, Table, create_engine, text  # noqa: E402

from maild.numbering.pattern import Pattern  # noqa: E402
from maild.storage.models import (  # noqa: E402
    Agent,
    AgentDesk,
    Attachment,
    AuditLog,
    Base,
    Contact,
    Desk,
    DeskAddress,
    Message,
    NumberCounter,
    OutboxMessage,
    Participant,
    SpoolEntry,
    Ticket,
)

DESKS = (  # name, address, pattern, share of the tickets
    ("support", "support@example.com", "SUP-{{yy}}-{{mm}}-{{nr-m}}", 0.55),
    ("sales", "sales@example.com", "SALES-{{nr}}", 0.2),
    ("billing", "billing@example.com", "BIL-{{yyyy}}-{{nr-y}}", 0.15),
    ("it", "it@example.com", "IT-{{nr}}", 0.1),
)
AGENTS_PER_DESK = 6
DAYS = 730  # the history spans two years, ending a day ago
# Statuses by age: old tickets are mostly closed, recent ones still open.
OLD_STATUSES = (("closed", 0.8), ("resolved", 0.15), ("waiting", 0.03), ("on_hold", 0.02))
NEW_STATUSES = (
    ("open", 0.35),
    ("in_progress", 0.2),
    ("waiting", 0.25),
    ("on_hold", 0.05),
    ("resolved", 0.15),
)
MESSAGES_PER_TICKET = ((1, 0.15), (2, 0.25), (3, 0.25), (4, 0.15), (5, 0.1), (6, 0.06), (7, 0.04))
WORDS = [
    "printer",
    "invoice",
    "login",
    "password",
    "error",
    "broken",
    "urgent",
    "order",
    "delivery",
    "refund",
    "account",
    "screen",
]
CHUNK = 20_000


def table_of(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


class Ids:
    """The next id of each table: rows get their ids here, so children can point at them at once."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def take(self, table: str) -> int:
        value = self.next.get(table, 0) + 1
        self.next[table] = value
        return value


class Writer:
    """Buffers rows per table and writes them in chunks: Core executemany (SQLite) or COPY (PostgreSQL)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgresql = conn.dialect.name == "postgresql"
        self.buffers: dict[str, list[dict[str, Any]]] = {}
        self.tables: dict[str, Table] = {}
        self.counts: dict[str, int] = {}

    def add(self, table: Table, row: dict[str, Any]) -> None:
        buffer = self.buffers.setdefault(table.name, [])
        self.tables[table.name] = table
        buffer.append(row)
        if len(buffer) >= CHUNK:
            self.flush_all()  # all of them, parents first: the children point at rows of the others

    def flush(self, name: str) -> None:
        rows = self.buffers.get(name) or []
        if not rows:
            return
        table = self.tables[name]
        if self.postgresql and len(rows) > 100:  # COPY skips Python-side defaults: the big tables set all
            self._copy(table, rows)
        else:
            self.conn.execute(table.insert(), rows)
        self.counts[name] = self.counts.get(name, 0) + len(rows)
        self.buffers[name] = []

    def flush_all(self) -> None:
        # Parents before children: the foreign keys are checked on insert.
        for name in ("contacts", "tickets", "participants", "spool", "messages", "attachments"):
            self.flush(name)
        for name in list(self.buffers):
            self.flush(name)

    def _copy(self, table: Table, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        as_json = {c for c in columns if isinstance(table.c[c].type, JSON)}
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(row[c]) if c in as_json else row[c] for c in columns])


def weighted(rng: random.Random, choices: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([c for c, _ in choices], [w for _, w in choices])[0]


def hexdigest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


_SENTENCES = [" ".join(random.Random(n).choices(WORDS, k=5 + n % 36)) for n in range(997)]


def sentence(rng: random.Random) -> str:
    """One of a fixed pool of texts: building a new one for each of millions of rows is the slow part."""
    return _SENTENCES[rng.getrandbits(16) % len(_SENTENCES)]


def seed_desks(writer: Writer, ids: Ids, now: dt.datetime) -> list[tuple[int, Pattern, list[int]]]:
    """The desks, their addresses and agents: (desk id, pattern, agent ids) per desk."""
    desks = []
    for name, address, pattern, _share in DESKS:
        desk_id = ids.take("desks")
        writer.add(table_of(Desk), {"id": desk_id, "name": name, "pattern": pattern, "created_at": now})
        writer.add(
            table_of(DeskAddress), {"id": ids.take("desk_addresses"), "desk_id": desk_id, "address": address}
        )
        agents = []
        for n in range(AGENTS_PER_DESK):
            agent_id = ids.take("agents")
            email = f"agent{n}.{name}@example.com"
            writer.add(
                table_of(Agent),
                {"id": agent_id, "email": email, "name": f"Agent {n}", "active": True, "created_at": now},
            )
            writer.add(table_of(AgentDesk), {"agent_id": agent_id, "desk_id": desk_id})
            agents.append(agent_id)
        desks.append((desk_id, Pattern(pattern), agents))
    for name in ("desks", "desk_addresses", "agents", "agent_desks"):
        writer.flush(name)
    return desks


def seed_contacts(writer: Writer, count: int, start: dt.datetime) -> None:
    for n in range(1, count + 1):
        email = f"customer{n}@c{n % 997}.example.net"
        writer.add(
            table_of(Contact),
            {
                "id": n,
                "email": email,
                "display_name": f"Customer {n}",
                "status": "bouncing" if n % 200 == 0 else "active",
                "status_reason": "550 5.1.1 user unknown" if n % 200 == 0 else "",
                "created_at": start,
            },
        )
    writer.flush("contacts")


class TicketSeeder:
    """One ticket with its messages, spool rows, outbox rows, audit rows and attachments."""

    def __init__(
        self, writer: Writer, ids: Ids, rng: random.Random, desks: list[tuple[int, Pattern, list[int]]]
    ):
        self.writer, self.ids, self.rng, self.desks = writer, ids, rng, desks
        self.counters: dict[tuple[int, str, str], int] = {}

    def number(self, desk_id: int, pattern: Pattern, naive: dt.datetime) -> str:
        at = naive.replace(tzinfo=dt.UTC)
        values = {}
        for counter, period in pattern.periods(at, "UTC").items():
            key = (desk_id, counter, period)
            self.counters[key] = values[counter] = self.counters.get(key, 0) + 1
        return pattern.render(at, "UTC", values)

    def ticket(self, ticket_id: int, customer_id: int, created: dt.datetime, recent: bool) -> None:
        rng = self.rng
        desk_index = rng.choices(range(len(DESKS)), [d[3] for d in DESKS])[0]
        desk_id, pattern, agents = self.desks[desk_index]
        status = weighted(rng, NEW_STATUSES if recent else OLD_STATUSES)
        count = weighted(rng, MESSAGES_PER_TICKET)
        updated = created + dt.timedelta(hours=rng.randint(1, 24 * 3) * (count - 1) + 1)
        subject = sentence(rng)[:60].capitalize()
        self.writer.add(
            table_of(Ticket),
            {
                "id": ticket_id,
                "number": self.number(desk_id, pattern, created),
                "desk_id": desk_id,
                "subject": subject,
                "status": status,
                "priority": "high" if ticket_id % 17 == 0 else "normal",
                "customer_id": customer_id,
                "assigned_agent_id": rng.choice(agents) if status != "open" else None,
                "status_changed_at": updated,
                "created_at": created,
                "updated_at": updated,
            },
        )
        self.writer.add(
            table_of(Participant),
            {
                "id": self.ids.take("participants"),
                "ticket_id": ticket_id,
                "contact_id": customer_id,
                "role": "customer",
            },
        )
        self.audit(ticket_id, created, "customer@mail", "ticket_created", {"desk_id": desk_id})
        if status != "open":
            self.audit(ticket_id, updated, f"agent{agents[0]}@example.com", "status", {"to": status})
        self.outbox(desk_id, ticket_id, "ticket_created", f"customer{customer_id}@example.net", created)
        self.outbox(desk_id, ticket_id, "new_ticket_notice", "agents@example.com", created)
        previous = ""
        for n in range(count):
            at = created + (updated - created) * n / max(1, count - 1)
            previous = self.message(desk_id, ticket_id, customer_id, subject, n, at, previous)

    def message(
        self,
        desk_id: int,
        ticket_id: int,
        customer_id: int,
        subject: str,
        n: int,
        at: dt.datetime,
        previous: str,
    ) -> str:
        """Message n of the ticket (even: the customer, odd: an agent, every fifth a note); its Message-ID."""
        rng, message_id = self.rng, self.ids.take("messages")
        kind = "note" if n % 5 == 4 else ("customer" if n % 2 == 0 else "agent")
        sender = (
            f"customer{customer_id}@c{customer_id % 997}.example.net"
            if kind == "customer"
            else "agent@example.com"
        )
        header_id = f"<seed-{message_id}.{rng.getrandbits(32):08x}@{sender.split('@')[1]}>"
        spool_id = None
        if kind != "note":  # mail that arrived: a spool row; an agent reply is also relayed (outbox)
            spool_id = self.spool(sender, header_id, ticket_id, at, "created" if n == 0 else "appended")
            if kind == "agent":
                self.outbox(desk_id, ticket_id, "agent_reply", f"customer{customer_id}@example.net", at)
        body = sentence(rng)
        self.writer.add(
            table_of(Message),
            {
                "id": message_id,
                "ticket_id": ticket_id,
                "desk_id": desk_id,
                "spool_id": spool_id,
                "kind": kind,
                "from_address": sender,
                "from_name": "",
                "subject": f"Re: {subject}" if n else subject,
                "message_id": header_id,
                "content_sha256": hexdigest("content", message_id),
                "in_reply_to": previous,
                "text": f"Hello,\n\n{body}\n\n> earlier text\n",
                "visible_text": f"Hello,\n\n{body}\n",
                "html": None,
                "notes": [],
                "threaded_by": "" if n == 0 else "references",
                "automatic": None,
                "created_at": at,
            },
        )
        if kind == "customer" and message_id % 10 == 0:  # a tenth of customer mails carry a screenshot
            self.attachment(message_id)
        return header_id

    def attachment(self, message_id: int) -> None:
        row = {"id": self.ids.take("attachments"), "message_id": message_id, "filename": "screenshot.png"}
        row |= {"content_type": "image/png", "size": 20_000 + message_id % 50_000, "inline": False}
        self.writer.add(table_of(Attachment), {**row, "sha256": hexdigest("file", message_id)})

    def spool(self, sender: str, header_id: str, ticket_id: int | None, at: dt.datetime, outcome: str) -> int:
        spool_id = self.ids.take("spool")
        self.writer.add(
            table_of(SpoolEntry),
            {
                "id": spool_id,
                "sha256": hexdigest("raw", spool_id),
                "recipient": "support@example.com",
                "mail_from": sender,
                "ingress": "lmtp",
                "size": 3000,
                "state": "done",
                "outcome": outcome,
                "reason": "",
                "header_message_id": header_id,
                "ticket_id": ticket_id,
                "attempts": 1,
                "trace": [],
                "received_at": at,
                "processed_at": at,
                "released": False,
            },
        )
        return spool_id

    def outbox(self, desk_id: int, ticket_id: int, template: str, rcpt: str, at: dt.datetime) -> None:
        row_id = self.ids.take("outbox")
        self.writer.add(
            table_of(OutboxMessage),
            {
                "id": row_id,
                "desk_id": desk_id,
                "ticket_id": ticket_id,
                "template": template,
                "message_id": f"<out-{row_id}@example.com>",
                "mail_from": "support@example.com",
                "rcpt_to": [],
                "delivered_to": [rcpt],
                "failed_to": [],
                "subject": template,
                "raw": b"Subject: " + template.encode() + b"\r\n\r\nseeded\r\n",
                "status": "sent",
                "attempts": 1,
                "next_attempt_at": at,
                "claimed_by": "",
                "last_error": "",
                "created_at": at,
                "sent_at": at,
            },
        )

    def audit(self, ticket_id: int, at: dt.datetime, actor: str, action: str, detail: dict[str, Any]) -> None:
        row = {"id": self.ids.take("audit_log"), "at": at, "actor": actor, "action": action}
        self.writer.add(table_of(AuditLog), {**row, "ticket_id": ticket_id, "detail": detail})


def seed_tickets(
    writer: Writer,
    ids: Ids,
    desks: list[tuple[int, Pattern, list[int]]],
    tickets: int,
    now: dt.datetime,
    rng: random.Random,
) -> TicketSeeder:
    """The tickets in creation order (ids follow time), from customers drawn with a long tail."""
    seeder = TicketSeeder(writer, ids, rng, desks)
    contacts = max(1, tickets // 4)
    start = now - dt.timedelta(days=DAYS)
    seed_contacts(writer, contacts, start)
    step = dt.timedelta(days=DAYS - 1) / tickets
    for ticket_id in range(1, tickets + 1):
        # A few customers write a lot: the square skews the draw toward low ids.
        customer_id = 1 + int(contacts * rng.random() ** 2)
        created = start + step * (ticket_id - 1)
        seeder.ticket(ticket_id, customer_id, created, recent=(now - created).days < 30)
        if ticket_id % 50 == 0:  # mail that made no message: duplicates, bounces, blocked senders
            outcome = rng.choice(("duplicate", "bounce", "blocked", "auto_reply_dropped"))
            seeder.spool(
                "mailer-daemon@example.org", f"<noise-{ticket_id}@example.org>", None, created, outcome
            )
        if ticket_id % 100_000 == 0:
            print(f"  {ticket_id} tickets", file=sys.stderr)
    writer.flush_all()
    return seeder


def finish(conn: Connection, writer: Writer, seeder: TicketSeeder) -> None:
    """The number counters past every seeded number; PostgreSQL's id sequences past the seeded ids."""
    for (desk_id, counter, period), value in sorted(seeder.counters.items()):
        writer.add(
            table_of(NumberCounter),
            {"desk_id": desk_id, "counter": counter, "period": period, "value": value},
        )
    writer.flush_all()
    if writer.postgresql:
        for name, table in writer.tables.items():
            if "id" in table.c and table.c.id.autoincrement is not False and table.c.id.primary_key:
                move = f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))"
                conn.execute(text(move))
        # Autovacuum would analyze the new rows soon anyway; the runs should not depend on when.
        conn.execute(text("ANALYZE"))
    # Not on SQLite: maild never runs ANALYZE there, and its averages would misjudge skewed columns (every
    # seeded outbox row is 'sent': ix_outbox_status would look useless for finding the queued ones).


def _engine_url(url: str) -> str:
    return (
        url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    )


def seed(url: str, tickets: int, *, seed_value: int = 1, now: dt.datetime | None = None) -> dict[str, int]:
    """Seed `tickets` tickets into the migrated, desk-less database at `url`; the rows written per table."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=1)
    engine = create_engine(_engine_url(url))
    rng, ids = random.Random(seed_value), Ids()
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # A bulk load of a throwaway database: no fsync per commit, a big page cache.
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.exec_driver_sql("PRAGMA cache_size=-1000000")
        if conn.execute(text("SELECT count(*) FROM desks")).scalar_one():
            raise SystemExit("the database already has desks: seed an empty, migrated one")
        writer = Writer(conn)
        desks = seed_desks(writer, ids, now)
        seeder = seed_tickets(writer, ids, desks, tickets, now, rng)
        finish(conn, writer, seeder)
    engine.dispose()
    return writer.counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = seed(args.database_url, args.tickets, seed_value=args.seed)
    elapsed = time.perf_counter() - started
    print(f"seeded {args.tickets} tickets in {elapsed:.1f} s", file=sys.stderr)
    print(json.dumps({"tickets": args.tickets, "seconds": round(elapsed, 1), "rows": counts}))


if __name__ == "__main__":
    main()
