"""Every statement the pipeline and the sender run on the hot path finds its rows by an index (issue 16,
"Scale"): a full scan of a table that grows with the desk's history (tickets, messages, spool, outbox …)
would make each mail slower as the years pile up, which a benchmark on a young database never shows.

The test feeds a mix of mails the way every ingress does (tests/pipeline/helpers.deliver): new tickets,
replies by In-Reply-To and by the [NUMBER] in the subject, an agent's reply with commands to the signed
reply address, an out-of-office answer, a re-delivery, a bounce to a VERP address; it flushes the outbox
after each one. Each statement seen by a `before_cursor_execute` listener is then explained: SQLite's
EXPLAIN QUERY PLAN, or PostgreSQL's EXPLAIN with sequential scans disabled (on a small table the planner
rightly prefers them; disabled, it still takes one when no index can serve, which is what we look for).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.mail.tokens import bounce_address, load_secret
from maild.outbound.sender import flush
from maild.pipeline.runner import Result
from maild.storage.db import transaction
from maild.storage.models import Agent, OutboxMessage
from tests.pipeline.helpers import (
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    agent_address,
    deliver,
    mail,
    make_agent,
    make_desk,
)
from tests.test_bounces import postfix_dsn

# The tables that grow with the desk's history; the others (desks, agents, patterns …) stay small.
BIG_TABLES = {
    "tickets",
    "messages",
    "attachments",
    "spool",
    "outbox",
    "audit_log",
    "contacts",
    "participants",
    "auto_replies",
    "ticket_tags",
    "ticket_flags",
    "time_entries",
    "escalation_fired",
}
ALICE, BOB, ANNA = "alice@customer.example", "bob@other.example", "anna@example.com"
Statement = tuple[str, Any]
# Columns whose value many rows of a big table share: an index search on these alone reads a desk's
# whole history (the desk_id prefix of the (desk_id, message_id) key, say), no better than a scan.
BROAD_COLUMNS = {"desk_id", "kind"}
# What else PostgreSQL's index conditions spell in lower case: casts and ANY.
PG_TYPE_WORDS = {
    "text",
    "integer",
    "bigint",
    "boolean",
    "timestamp",
    "without",
    "time",
    "zone",
    "character",
    "varying",
}


@pytest.fixture
def desks(session_factory: sessionmaker[Session]) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])


def _engine(factory: sessionmaker[Session]) -> Engine:
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


@pytest.fixture
def captured(desks: None, session_factory: sessionmaker[Session], cfg: Config) -> Iterator[list[Statement]]:
    """The statements of the mail mix, in order (each distinct one once)."""
    seen: dict[str, Any] = {}

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if (
            not statement.lstrip().upper().startswith("INSERT")
        ):  # inserting reads no table (ON CONFLICT: by key)
            seen.setdefault(statement, parameters[0] if many and parameters else parameters)

    engine = _engine(session_factory)
    event.listen(engine, "before_cursor_execute", listen)
    try:
        _feed(session_factory, cfg)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    yield list(seen.items())


def _feed(factory: sessionmaker[Session], cfg: Config) -> None:
    def send(raw: bytes, recipient: str = SUPPORT) -> Result:
        result = deliver(factory, cfg, raw, recipient)
        if result.outbox_ids:
            flush(factory, cfg, result.outbox_ids)
        return result

    first = send(mail(message_id="<first@customer.example>"))
    assert first.outcome == "created" and first.ticket_number
    number = first.ticket_number
    send(mail(sender=f"Bob <{BOB}>", to=SALES, message_id="<sales@other.example>"), SALES)
    with factory() as s:
        [autoreply] = [
            r for r in map(s.get_one, [OutboxMessage] * 9, first.outbox_ids) if ALICE in r.delivered_to
        ]
        verp = bounce_address(load_secret(cfg.data_dir), autoreply.mail_from, autoreply.id, ALICE)
        reply_to_id = autoreply.message_id
    threaded = [("In-Reply-To", reply_to_id), ("References", f"<first@customer.example> {reply_to_id}")]
    assert (
        send(
            mail(subject="Re: Printer on fire", message_id="<r1@customer.example>", extra=threaded)
        ).ticket_number
        == number
    )
    assert (
        send(mail(subject=f"Re: [{number}] more", message_id="<r2@customer.example>")).ticket_number == number
    )
    agent_reply = mail(
        sender=f"Anna <{ANNA}>",
        subject=f"Re: [{number}] Printer on fire",
        body="#status waiting\n#tag hardware\n#time 10m\n\nWe are on it.\n",
        message_id="<a1@example.com>",
    )
    send(agent_reply, agent_address(factory, cfg, number, ANNA))
    away = [("Auto-Submitted", "auto-replied"), ("In-Reply-To", reply_to_id)]
    send(mail(subject="Out of office: Printer on fire", message_id="<ooo@customer.example>", extra=away))
    send(mail(message_id="<first@customer.example>"))  # a re-delivery
    assert send(postfix_dsn(ALICE, to=verp), verp).outcome == "bounce"
    for n in range(7):  # a customer writing fast: the flood pause counts their recent mail
        send(
            mail(
                sender=f"Bob <{BOB}>", subject=f"Another problem {n}", message_id=f"<flood{n}@other.example>"
            )
        )


def full_scans(conn: Connection, statements: list[Statement]) -> list[str]:
    """A line per statement that reads a big table whole: the table and the statement."""
    found = []
    postgresql = conn.dialect.name == "postgresql"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    leading: dict[str, str] = {}
    if postgresql:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        )
        leading = dict(cursor.fetchall())
    for statement, parameters in statements:
        if not re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", statement, re.IGNORECASE):
            continue
        tables = (
            _pg_scans(cursor, statement, parameters, leading)
            if postgresql
            else _sqlite_scans(cursor, statement, parameters)
        )
        found += [f"{table}: {' '.join(statement.split())}" for table in sorted(tables & BIG_TABLES)]
    return found


def _sqlite_scans(cursor: Any, statement: str, parameters: Any) -> set[str]:
    cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters or ())
    scans = set()
    for row in cursor.fetchall():
        # "SCAN messages" or "SCAN messages USING INDEX …" (every entry of an index) read it whole;
        # "SEARCH messages USING INDEX … (desk_id=?)" does not. SQLAlchemy's aliases end in _1, _2 ….
        detail = row[3]
        scan = re.match(r"SCAN (\w+)", detail)
        search = re.match(r"SEARCH (\w+) USING (?:COVERING )?INDEX \w+ \((.*)\)", detail)
        if search and set(re.findall(r"(\w+)[=<>]", search.group(2))) <= BROAD_COLUMNS:
            scan = search
        if scan:
            scans.add(re.sub(r"_\d+$", "", scan.group(1)))
    return scans


def _pg_scans(cursor: Any, statement: str, parameters: Any, leading: dict[str, str]) -> set[str]:
    """The big tables the plan reads whole; `leading`: the first column of each index, by name."""
    cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters or None)
    scans: set[str] = set()
    nodes = [cursor.fetchone()[0][0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes += node.get("Plans", [])
        kind, relation = node["Node Type"], node.get("Relation Name")
        # An index scan without a condition but with a filter walks the whole index (the planner's way
        # around disabled sequential scans); one without a filter is an ordered read that stops early.
        condition = node.get("Index Cond")
        if kind == "Seq Scan" or (kind.startswith("Index") and condition is None and "Filter" in node):
            scans.add(relation)
        elif condition is not None:
            columns = set(re.findall(r"[a-z_]\w*", re.sub(r"'[^']*'", "", condition))) - PG_TYPE_WORDS
            # PostgreSQL walks a whole index for a condition on a later column of it (a unique key's).
            if columns <= BROAD_COLUMNS or leading.get(node.get("Index Name", "")) not in columns:
                scans.add(relation)
    return scans


def test_the_hot_path_reads_every_big_table_by_an_index(
    captured: list[Statement], session_factory: sessionmaker[Session]
) -> None:
    assert len(captured) > 50  # the mix ran the pipeline's stages and the sender
    with _engine(session_factory).connect() as conn:
        scans = full_scans(conn, captured)
    assert not scans, "full scans:\n" + "\n".join(scans)


def test_a_missing_index_is_noticed(
    captured: list[Statement], session_factory: sessionmaker[Session]
) -> None:
    # Threading by In-Reply-To looks the Message-ID up among the messages: without its index, a scan.
    with transaction(session_factory) as s:
        s.execute(text("DROP INDEX ix_messages_message_id"))
        assert s.query(Agent).count() == 1
    with _engine(session_factory).connect() as conn:
        scans = full_scans(conn, captured)
    assert any(
        line.startswith("messages: SELECT messages.message_id, messages.ticket_id") for line in scans
    ), scans
