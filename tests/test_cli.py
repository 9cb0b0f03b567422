"""`maildctl` as an admin runs it: real subprocesses against the test database (SQLite or PostgreSQL).

Tickets are made the way production makes them, by piping mails through `maild pipe`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from maild.mail.tokens import load_secret, reply_address
from maild.numbering.pattern import Pattern, PatternError
from maild.storage.db import make_engine, make_sessionmaker
from maild.storage.migrate import current_head
from maild.storage.models import Agent, Desk, DeskAddress
from tests.conftest import IS_POSTGRESQL, _pg_url, run_cli

Ctl = Callable[..., subprocess.CompletedProcess[str]]
TICKET_FIELDS = {
    "number",
    "subject",
    "status",
    "priority",
    "desk",
    "customer",
    "created_at",
    "updated_at",
    "message_count",
}


@pytest.fixture
def ctl(config_file: Path) -> Ctl:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("maildctl", *args, config=config_file)

    return run


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc).stdout)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """A refusal: non-zero exit, nothing on stdout, exactly one line on stderr, never a traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("maildctl: "), lines[0]
    assert proc.stdout == ""
    return lines[0]


def parse_iso(value: str) -> dt.datetime:
    assert value.endswith("Z"), value
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None
    return parsed


def seed_desk(factory: sessionmaker[Session], name: str, pattern: str, *addresses: str) -> None:
    with factory() as s, s.begin():
        desk = Desk(name=name, pattern=pattern, timezone="UTC", auto_reply=True)
        desk.addresses = [DeskAddress(address=a) for a in addresses]
        s.add(desk)


def seed_agent(factory: sessionmaker[Session], email: str, name: str, *desks: str) -> None:
    with factory() as s, s.begin():
        agent = Agent(email=email, name=name)
        agent.desks = list(s.scalars(select(Desk).where(Desk.name.in_(desks))))
        s.add(agent)


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def pipe(config: Path, raw: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("maild", "pipe", *args, config=config, stdin=raw.replace("\n", "\r\n").encode())


def mail(sender: str, to: str, subject: str, message_id: str, body: str, *headers: str) -> str:
    extra = "".join(f"{h}\n" for h in headers)
    return (
        f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: {message_id}\n"
        f"Date: Sat, 07 Mar 2026 12:00:00 +0000\n{extra}\n{body}\n"
    )


# --- init -------------------------------------------------------------------------------------------


def test_init_creates_the_data_dir_layout_and_is_an_idempotent_upgrade(tmp_path: Path) -> None:
    config = tmp_path / "maild.toml"
    config.write_text('data_dir = "data"\n')  # the embedded default: SQLite under the data dir
    data = tmp_path / "data"

    first = ok(run_cli("maildctl", "init", config=config))
    assert first.stdout.strip() == f"initialised {data} (database at head)"
    for sub in ("spool", "attachments", "templates", "outgoing/tmp", "outgoing/new", "outgoing/cur"):
        assert (data / sub).is_dir(), sub
    db = data / "maild.sqlite3"
    assert db.is_file()
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == current_head()

    ok(
        run_cli(
            "maildctl",
            "desk",
            "add",
            "it",
            "--address",
            "it@example.com",
            "--pattern",
            "IT-{{nr}}",
            config=config,
        )
    )
    second = ok(run_cli("maildctl", "init", config=config))  # upgrade at head: a no-op
    assert second.stdout == first.stdout
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == current_head()
        assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    engine.dispose()
    desks = as_json(run_cli("maildctl", "desk", "list", "--json", config=config))
    assert [d["name"] for d in desks] == ["it"]  # the second init kept the data


def test_init_on_an_already_migrated_database_is_a_no_op(
    ctl: Ctl, data_dir: Path, session_factory: Any
) -> None:
    seed_desk(session_factory, "support", "SUP-{{nr}}", "support@example.com")
    ok(ctl("init"))
    ok(ctl("init"))
    assert (data_dir / "outgoing" / "new").is_dir()
    assert [d["name"] for d in as_json(ctl("desk", "list", "--json"))] == ["support"]


def test_maildctl_before_init_on_a_fresh_data_dir_says_to_run_init(tmp_path: Path) -> None:
    config = tmp_path / "maild.toml"
    config.write_text('data_dir = "data"\n')
    for args in (("desk", "list"), ("ticket", "list", "--json"), ("outbox", "list"), ("agent", "list")):
        line = one_line_error(run_cli("maildctl", *args, config=config))
        assert "run 'maildctl init'" in line
    assert not (tmp_path / "data" / "maild.sqlite3").exists()  # asking did not create an empty database


def test_maildctl_before_init_on_an_empty_database_says_to_run_init(
    tmp_path: Path, empty_database_url: str
) -> None:
    config = tmp_path / "maild.toml"
    config.write_text(f'data_dir = "data"\n[database]\nurl = "{empty_database_url}"\n')
    line = one_line_error(run_cli("maildctl", "desk", "list", config=config))
    assert "maildctl init" in line
    ok(run_cli("maildctl", "init", config=config))
    ok(run_cli("maildctl", "init", config=config))
    assert as_json(run_cli("maildctl", "desk", "list", "--json", config=config)) == []


@pytest.mark.postgresql_only
@pytest.mark.skipif(not IS_POSTGRESQL, reason="a missing database only exists on PostgreSQL")
def test_a_missing_postgresql_database_is_not_blamed_on_a_missing_init(tmp_path: Path) -> None:
    config = tmp_path / "maild.toml"
    url = _pg_url(f"maild_no_such_db_{os.getpid()}")
    config.write_text(f'data_dir = "data"\n[database]\nurl = "{url}"\n')
    for args in (("desk", "list"), ("init",)):  # init cannot create a database: it must not point to itself
        line = one_line_error(run_cli("maildctl", *args, config=config))
        assert "does not exist" in line
        assert "init" not in line


# --- desks ------------------------------------------------------------------------------------------


def test_desk_add_list_show(ctl: Ctl) -> None:
    added = ok(
        ctl(
            "desk",
            "add",
            "support",
            "--address",
            "Support@Example.com",
            "--address",
            "help@example.com",
            "--pattern",
            "SUP-{{yy}}-{{nr-y}}",
            "--timezone",
            "Europe/Budapest",
        )
    )
    assert (
        added.stdout.strip()
        == "desk support added: support@example.com, help@example.com, numbers SUP-{{yy}}-{{nr-y}}"
    )
    ok(
        ctl(
            "desk",
            "add",
            "billing",
            "--address",
            "billing@example.com",
            "--pattern",
            "BIL-{{nr}}",
            "--no-auto-reply",
            "--no-hijack-guard",
            "--reopen-days",
            "3",
        )
    )

    desks = as_json(ctl("desk", "list", "--json"))
    assert [d["name"] for d in desks] == ["billing", "support"]  # by name
    support = desks[1]
    assert support == {
        "name": "support",
        "sender_name": "",
        "retired_patterns": [],
        "addresses": ["support@example.com", "help@example.com"],  # lower-cased, primary first
        "pattern": "SUP-{{yy}}-{{nr-y}}",
        "timezone": "Europe/Budapest",
        "business_hours": "",
        "auto_reply": True,
        "hijack_guard": True,
        "reopen_days": 14,
        "clients_only": False,
        "replies_only": False,
        "language": "en",
        "web_ratings": False,
        "web_new_tickets": False,
        "web_confirm_address": False,
        "allowed_extensions": [],
        "max_attachment_mb": 25,
        "auto_close_hours": 0,
        "auto_close_statuses": ["waiting", "resolved"],
        "when_nobody_present": "notify-all",
        "agents": [],
        "created_at": support["created_at"],
    }
    parse_iso(support["created_at"])
    assert desks[0]["auto_reply"] is False
    assert (desks[0]["hijack_guard"], desks[0]["reopen_days"]) == (False, 3)
    assert desks[0]["timezone"] == "UTC"

    assert as_json(ctl("desk", "show", "support", "--json")) == support

    table = ok(ctl("desk", "list")).stdout.splitlines()
    assert table[0].split() == ["NAME", "PATTERN", "ADDRESSES", "AGENTS"]
    assert table[1].split()[:2] == ["billing", "BIL-{{nr}}"]
    assert table[2].startswith("support")

    shown = ok(ctl("desk", "show", "support")).stdout
    assert "addresses: support@example.com, help@example.com" in shown
    assert "timezone: Europe/Budapest" in shown


def test_desk_show_unknown(ctl: Ctl) -> None:
    assert "no desk named 'nope'" in one_line_error(ctl("desk", "show", "nope", "--json"))


def pattern_error(source: str) -> str:
    with pytest.raises(PatternError) as info:
        Pattern(source)
    return str(info.value)


def test_the_overlapping_pair_really_overlaps() -> None:
    # a number like SUP-261 belongs to both: {{nr}} = 261, or {{yy}} = 26 and {{nr-y}} = 1
    assert Pattern("SUP-{{nr}}").overlaps(Pattern("SUP-{{yy}}{{nr-y}}"))
    assert Pattern("SUP-{{nr}}").overlaps(Pattern("sup-{{nr}}"))  # tags are matched case-insensitively
    assert not Pattern("SUP-{{nr}}").overlaps(Pattern("SUP-{{yy}}-{{nr-y}}"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["support", "--address", "other@example.com", "--pattern", "OTH-{{nr}}"],
            "desk 'support' exists already",
        ),
        (
            ["other", "--address", "SUPPORT@example.com", "--pattern", "OTH-{{nr}}"],
            "address support@example.com belongs to desk 'support' already",
        ),
        (
            [
                "other",
                "--address",
                "new@example.com",
                "--address",
                "support@example.com",
                "--pattern",
                "OTH-{{nr}}",
            ],
            "address support@example.com belongs to desk 'support' already",
        ),
        (
            ["other", "--address", "not-an-address", "--pattern", "OTH-{{nr}}"],
            "invalid --address 'not-an-address'",
        ),
        (
            ["other", "--address", "other+tag@example.com", "--pattern", "OTH-{{nr}}"],
            "invalid --address 'other+tag@example.com'",
        ),
        (["other", "--address", "o@example.com", "--pattern", "OTH-{{nr"], pattern_error("OTH-{{nr")),
        (["other", "--address", "o@example.com", "--pattern", "OTH"], pattern_error("OTH")),
        (
            [
                "other",
                "--address",
                "o@example.com",
                "--pattern",
                "OTH-{{nr}}",
                "--timezone",
                "Mars/Olympus_Mons",
            ],
            "unknown --timezone 'Mars/Olympus_Mons'",
        ),
        (
            ["other", "--address", "o@example.com", "--pattern", "SUP-{{yy}}{{nr-y}}"],
            "could produce numbers of desk 'support'",
        ),
        (
            ["other", "--address", "o@example.com", "--pattern", "sup-{{nr}}"],
            "could produce numbers of desk 'support'",
        ),
        (
            ["../escape", "--address", "o@example.com", "--pattern", "OTH-{{nr}}"],
            "invalid desk name '../escape'",
        ),
    ],
    ids=[
        "duplicate name",
        "address of another desk",
        "one address of another desk",
        "invalid address",
        "subaddress",
        "unbalanced brace",
        "no counter",
        "unknown timezone",
        "overlapping pattern",
        "same pattern other case",
        "path in name",
    ],
)
def test_desk_add_refusals(ctl: Ctl, session_factory: Any, args: list[str], expected: str) -> None:
    seed_desk(session_factory, "support", "SUP-{{nr}}", "support@example.com")
    line = one_line_error(ctl("desk", "add", *args))
    assert expected in line
    assert count(session_factory, Desk) == 1  # nothing half-written
    assert count(session_factory, DeskAddress) == 1


def test_pattern_refusal_quotes_the_pattern_errors_own_message(ctl: Ctl) -> None:
    line = one_line_error(ctl("desk", "add", "x", "--address", "x@example.com", "--pattern", "X-{{nr-w}}"))
    assert line == f"maildctl: invalid --pattern 'X-{{{{nr-w}}}}': {pattern_error('X-{{nr-w}}')}"


# --- agents -----------------------------------------------------------------------------------------


def test_agent_add_and_list(ctl: Ctl, session_factory: Any) -> None:
    seed_desk(session_factory, "support", "SUP-{{nr}}", "support@example.com")
    seed_desk(session_factory, "sales", "SAL-{{nr}}", "sales@example.com")

    ok(ctl("agent", "add", "bob@example.org", "--name", "Bob", "--desk", "sales", "--desk", "support"))
    assert ok(
        ctl("agent", "add", "Alice@Example.org", "--name", "Alice", "--desk", "support")
    ).stdout.strip() == ("agent alice@example.org on support")
    # adding again is refused (it would silently rename her); with --update it changes the name and adds the
    # desk, without a second agent
    again = ["agent", "add", "alice@example.org", "--name", "Alice A.", "--desk", "sales"]
    again += ["--desk", "support"]
    assert "exists already" in one_line_error(ctl(*again))
    assert ok(ctl(*again, "--update")).stdout.strip() == (
        "agent alice@example.org: name 'Alice' → 'Alice A.'; desks + sales"
    )

    agents = as_json(ctl("agent", "list", "--json"))
    assert agents == [
        {
            "email": "alice@example.org",
            "name": "Alice A.",
            "display_name": "",
            "active": True,
            "desks": ["sales", "support"],
            "present": True,
            "away_since": None,
            "away_until": None,
        },
        {
            "email": "bob@example.org",
            "name": "Bob",
            "display_name": "",
            "active": True,
            "desks": ["sales", "support"],
            "present": True,
            "away_since": None,
            "away_until": None,
        },
    ]
    # sorted, whatever order they joined in and whatever order the database returns
    assert as_json(ctl("desk", "show", "support", "--json"))["agents"] == [
        "alice@example.org",
        "bob@example.org",
    ]
    table = ok(ctl("agent", "list")).stdout.splitlines()
    assert table[0].split() == ["EMAIL", "NAME", "DESKS", "PRESENCE"]
    assert table[1].startswith("alice@example.org")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["carol@example.org", "--name", "Carol", "--desk", "nope"], "no desk named 'nope'"),
        (
            ["carol@example.org", "--name", "Carol", "--desk", "support", "--desk", "nope"],
            "no desk named 'nope'",
        ),
        (
            ["support@example.com", "--name", "Desk", "--desk", "support"],
            "support@example.com is a desk address",
        ),
        (
            ["Support@EXAMPLE.com", "--name", "Desk", "--desk", "support"],
            "support@example.com is a desk address",
        ),
        (["carol", "--name", "Carol", "--desk", "support"], "invalid agent address 'carol'"),
        (["carol@example.org", "--name", " ", "--desk", "support"], "--name must not be empty"),
    ],
    ids=[
        "unknown desk",
        "one unknown desk",
        "desk address",
        "desk address other case",
        "invalid",
        "empty name",
    ],
)
def test_agent_add_refusals(ctl: Ctl, session_factory: Any, args: list[str], expected: str) -> None:
    seed_desk(session_factory, "support", "SUP-{{nr}}", "support@example.com")
    assert expected in one_line_error(ctl("agent", "add", *args))
    assert count(session_factory, Agent) == 0


# --- tickets, outbox, spool (made by `maild pipe`) ------------------------------------------------


# Filled in by `helpdesk`: the token needs the data dir's secret.
AGENT_REPLY_ADDRESS = "{agent reply address}"
HELPDESK_MAILS: list[tuple[str, tuple[str, ...], int]] = [
    (
        mail(
            '"Carol Customer" <Carol@Customer.test>',
            "support@example.com",
            "Printer on fire",
            "<m1@customer.test>",
            "It does not print, it burns.",
        ),
        ("--recipient", "support@example.com"),
        0,
    ),
    (
        mail("Dan <dan@shop.test>", "sales@example.com", "Quote please", "<m2@shop.test>", "How much?"),
        (),
        0,
    ),
    (
        mail(
            "carol@customer.test",
            "support@example.com",
            "Re: [SUP-1] Printer on fire",
            "<m3@customer.test>",
            "Now the desk burns too.",
            "In-Reply-To: <m1@customer.test>",
        ),
        (),
        0,
    ),
    (
        mail(
            "Alice <alice@example.org>",
            "support@example.com",
            "Re: [SUP-1] Printer on fire",
            "<a1@example.org>",
            "Unplug it, please.",
            "In-Reply-To: <m3@customer.test>",
        ),
        ("--recipient", AGENT_REPLY_ADDRESS),  # the agent answers to their notice's Reply-To
        0,
    ),
    (mail("x@spam.test", "nobody@example.com", "Hi", "<s1@spam.test>", "?"), (), 67),
    ("this is not a mail at all", ("--recipient", "support@example.com"), 0),
]


@contextmanager
def module_database(template: str, root: Path) -> Iterator[str]:
    """Like conftest's `database_url`, for a whole module: a migrated database built once."""
    if not IS_POSTGRESQL:
        target = root / "maild.sqlite3"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    admin = create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
    name = f"maild_cli_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield _pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def helpdesk(_template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two desks and an agent; SUP-1 (opened by Carol, answered by the agent) and SAL-1 (opened by Dan),
    a reply from Carol, a mail for nobody and a non-mail. Built once: the tests using it only read.
    Returns the directory holding `maild.toml` and `data/`."""
    root = tmp_path_factory.mktemp("helpdesk")
    (root / "data").mkdir()
    with module_database(_template_db, root) as url:
        config = root / "maild.toml"
        config.write_text(f'data_dir = "{root / "data"}"\n\n[database]\nurl = "{url}"\n')
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        seed_desk(factory, "support", "SUP-{{nr}}", "support@example.com")
        seed_desk(factory, "sales", "SAL-{{nr}}", "sales@example.com")
        seed_agent(factory, "alice@example.org", "Alice", "support")
        engine.dispose()
        # SUP-1 is ticket 1, Alice agent 1
        agent_reply = reply_address(load_secret(root / "data"), "support@example.com", 1, 1)
        for raw, args, code in HELPDESK_MAILS:
            proc = pipe(config, raw, *(agent_reply if a == AGENT_REPLY_ADDRESS else a for a in args))
            assert proc.returncode == code, proc.stderr
        yield root


@pytest.fixture
def hctl(helpdesk: Path) -> Ctl:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("maildctl", *args, config=helpdesk / "maild.toml")

    return run


def test_ticket_list_json(hctl: Ctl) -> None:
    tickets = as_json(hctl("ticket", "list", "--json"))
    assert [t["number"] for t in tickets] == ["SAL-1", "SUP-1"]  # newest first
    for ticket in tickets:
        assert set(ticket) == TICKET_FIELDS
        assert parse_iso(ticket["updated_at"]) >= parse_iso(ticket["created_at"])
    sal, sup = tickets
    assert {k: sal[k] for k in TICKET_FIELDS - {"created_at", "updated_at"}} == {
        "number": "SAL-1",
        "subject": "Quote please",
        "status": "open",
        "priority": "normal",
        "desk": "sales",
        "customer": "dan@shop.test",
        "message_count": 1,
    }
    assert sup["subject"] == "Printer on fire"
    assert sup["status"] == "waiting"  # the agent answered last
    assert sup["customer"] == "carol@customer.test"
    assert sup["desk"] == "support"
    assert sup["message_count"] == 3
    assert parse_iso(sup["updated_at"]) > parse_iso(sup["created_at"])


@pytest.mark.parametrize(
    ("filters", "numbers"),
    [
        (["--status", "open"], ["SAL-1"]),
        (["--status", "waiting"], ["SUP-1"]),
        (["--status", "closed"], []),
        (["--desk", "support"], ["SUP-1"]),
        (["--desk", "sales", "--status", "open"], ["SAL-1"]),
        (["--desk", "sales", "--status", "waiting"], []),
    ],
)
def test_ticket_list_filters(hctl: Ctl, filters: list[str], numbers: list[str]) -> None:
    assert [t["number"] for t in as_json(hctl("ticket", "list", *filters, "--json"))] == numbers


def test_ticket_list_table(hctl: Ctl) -> None:
    lines = ok(hctl("ticket", "list")).stdout.splitlines()
    assert lines[0].split() == ["NUMBER", "STATUS", "PRIORITY", "DESK", "CUSTOMER", "MSGS", "SUBJECT"]
    assert lines[1].split() == ["SAL-1", "open", "normal", "sales", "dan@shop.test", "1", "Quote", "please"]
    assert lines[2].split()[:6] == ["SUP-1", "waiting", "normal", "support", "carol@customer.test", "3"]


def test_ticket_show_json(hctl: Ctl) -> None:
    ticket = as_json(hctl("ticket", "show", "SUP-1", "--json"))
    assert TICKET_FIELDS | {"participants", "messages"} <= set(ticket)
    assert ticket["number"] == "SUP-1"
    assert ticket["message_count"] == 3
    assert ticket["participants"] == ["carol@customer.test"]
    messages = ticket["messages"]
    assert [m["message_id"] for m in messages] == [
        "<m1@customer.test>",
        "<m3@customer.test>",
        "<a1@example.org>",
    ]
    assert [m["from"] for m in messages] == [
        "carol@customer.test",
        "carol@customer.test",
        "alice@example.org",
    ]
    assert [m["kind"] for m in messages] == ["customer", "customer", "agent"]
    assert "It does not print, it burns." in messages[0]["text"]
    assert "Unplug it, please." in messages[2]["text"]
    for m in messages:
        assert {"id", "from", "kind", "text", "message_id", "created_at"} <= set(m)
        parse_iso(m["created_at"])
    ids = [m["id"] for m in messages]
    assert ids == sorted(ids)
    # numbers are found case-insensitively
    assert as_json(hctl("ticket", "show", "sup-1", "--json")) == ticket


def test_ticket_show_text(hctl: Ctl) -> None:
    out = ok(hctl("ticket", "show", "SAL-1")).stdout
    assert out.splitlines()[0] == "SAL-1  Quote please"
    assert "status open, priority normal, desk sales" in out
    assert "customer dan@shop.test" in out
    assert "How much?" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ticket", "show", "SUP-99"], "no ticket 'SUP-99'"),
        (["ticket", "show", "SUP-99", "--json"], "no ticket 'SUP-99'"),
        (["ticket", "list", "--desk", "nope"], "no desk named 'nope'"),
        (["ticket", "list", "--status", "pending", "--json"], "unknown --status 'pending'"),
        (["outbox", "list", "--status", "lost"], "unknown --status 'lost'"),
        (["spool", "list", "--outcome", "eaten"], "unknown --outcome 'eaten'"),
        (["spool", "list", "--quarantined", "--outcome", "created"], "--quarantined and --outcome disagree"),
    ],
)
def test_unknown_names_are_one_line_errors(hctl: Ctl, args: list[str], expected: str) -> None:
    assert expected in one_line_error(hctl(*args))


def test_outbox_list_json(helpdesk: Path, hctl: Ctl) -> None:
    rows = as_json(hctl("outbox", "list", "--json"))
    # (the agents' notices of these mails are tested in tests/test_agent_notifications.py)
    rows = [r for r in rows if not r["template"].endswith("_notice")]
    # one ticket_created auto-reply per new ticket, delivered by `maild pipe` to the outgoing Maildir
    assert [(r["ticket"], r["template"], r["to"], r["status"]) for r in rows] == [
        ("SUP-1", "agent_reply", ["carol@customer.test"], "sent"),  # Alice's answer, relayed
        ("SAL-1", "ticket_created", ["dan@shop.test"], "sent"),
        ("SUP-1", "ticket_created", ["carol@customer.test"], "sent"),
    ]
    for row in rows:
        assert row["subject"].startswith(f"[{row['ticket']}] ")
        assert row["attempts"] == 1
        assert row["last_error"] == ""
        assert row["next_attempt_at"] is None
        assert row["message_id"].endswith("@example.com>")
        assert parse_iso(row["sent_at"]) >= parse_iso(row["created_at"])
    # the two auto-replies, SUP-1's agent's new_ticket_notice and customer_reply_notice, and the relay
    assert len(list((helpdesk / "data" / "outgoing" / "new").iterdir())) == 5
    assert as_json(hctl("outbox", "list", "--status", "queued", "--json")) == []
    assert len(as_json(hctl("outbox", "list", "--status", "sent", "--json"))) == 5


def test_spool_list_json(hctl: Ctl) -> None:
    entries = as_json(hctl("spool", "list", "--json"))
    assert [e["outcome"] for e in entries] == [
        "quarantined",
        "unknown_recipient",
        "replied",
        "replied",
        "created",
        "created",
    ]  # newest first
    assert all(e["state"] == "done" and e["ingress"] == "pipe" for e in entries)
    assert [e["ticket"] for e in entries] == [None, None, "SUP-1", "SUP-1", "SAL-1", "SUP-1"]
    assert entries[-1]["recipient"] == "support@example.com"
    assert entries[-1]["message_id"] == "<m1@customer.test>"
    assert entries[1]["reason"]  # why no desk took it
    assert [t["stage"] for t in entries[-1]["trace"]] == [
        "parse",
        "loop",
        "bounce",
        "spam",
        "blocked",
        "autoreply",
        "route",
        "dedupe",
        "agent_mail",
        "identify",
        "thread",
        "policy",
        "commands",
        "apply",
        "automation",
        "notify",
    ]

    created = as_json(hctl("spool", "list", "--outcome", "created", "--json"))
    assert [e["ticket"] for e in created] == ["SAL-1", "SUP-1"]
    quarantined = as_json(hctl("spool", "list", "--quarantined", "--json"))
    assert len(quarantined) == 1
    assert quarantined[0]["reason"]
    assert quarantined[0]["ticket"] is None
    assert quarantined == as_json(
        hctl("spool", "list", "--outcome", "quarantined", "--quarantined", "--json")
    )
    assert as_json(hctl("spool", "list", "--outcome", "duplicate", "--json")) == []
