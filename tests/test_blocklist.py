"""The blocklist: which senders match (address, @domain with or without subdomains, wildcards, any case),
`maildctl block add|remove|list`, the blocked stage (From header and envelope sender: outcome `blocked`, no
ticket, nothing queued), `maildctl ticket block-and-delete`, and `[hygiene] blocked = "reject"`: 550 5.7.1
at MAIL and after DATA over real SMTP and LMTP listeners on loopback, with nothing spooled."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.admin_cli.main import main as maildctl
from maild.config import Config, Hygiene
from maild.ingress.listeners import BlockedSenders
from maild.mail.addresses import normalize
from maild.outbound.blocklist import InvalidPattern, Rule, check_pattern, find_block, load_rules, match_rules
from maild.pipeline.runner import Result, process
from maild.storage.db import make_engine, make_sessionmaker, transaction
from maild.storage.models import (
    Attachment,
    AuditLog,
    BlockEntry,
    Contact,
    Message,
    Participant,
)
from maild.storage.spool import record_received, write_raw
from tests.conftest import run_cli
from tests.pipeline.helpers import (
    NOW,
    SALES,
    SALES_PATTERN,
    SUP_PATTERN,
    SUPPORT,
    deliver,
    mail,
    make_desk,
    outbox,
    spool,
    tickets,
)
from tests.test_explain import with_attachment
from tests.test_listeners import OK, TRY_LATER, Client, intake, run

Factory = sessionmaker[Session]
REFUSED = "550 5.7.1"
SPAMMER = "Spam King <king@spam.test>"


@pytest.fixture(autouse=True)
def _desks(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", [SALES], SALES_PATTERN)


def block(factory: Factory, pattern: str, *, subdomains: bool = False, reason: str = "") -> None:
    with transaction(factory) as session:
        session.add(
            BlockEntry(pattern=check_pattern(pattern), subdomains=subdomains, reason=reason, added_by="t")
        )


def deliver_from(
    factory: Factory, cfg: Config, raw: bytes, mail_from: str, recipient: str = SUPPORT
) -> Result:
    """As maild pipe --sender / the listeners do: the envelope sender recorded on the spool row."""
    digest = write_raw(cfg.spool_dir, raw)
    with transaction(factory) as session:
        spool_id = record_received(session, digest, len(raw), normalize(recipient), "pipe", mail_from).id
    return process(factory, cfg, spool_id, NOW)


def cli(config_file: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """maildctl in process (a subprocess per call would cost a second each on two shared cores)."""
    code = maildctl(["--config", str(config_file), *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("maildctl: "), err
    return err.strip()


# --- which senders match ------------------------------------------------------------------------------

# (pattern, subdomains) → addresses blocked, addresses not blocked
CASES: list[tuple[str, bool, list[str], list[str]]] = [
    (
        "alice@example.org",
        False,
        ["alice@example.org", "ALICE@Example.ORG"],
        ["bob@example.org", "alice@example.com"],
    ),
    (
        "@spam.test",
        False,
        ["a@spam.test", "B@SPAM.TEST"],
        ["a@mail.spam.test", "a@notspam.test", "a@spam.test.org"],
    ),
    (
        "@spam.test",
        True,
        ["a@spam.test", "a@mail.spam.test", "a@x.y.spam.test"],
        ["a@notspam.test", "a@spam.testing"],
    ),
    ("*@*.spam.test", False, ["a@mail.spam.test", "A@X.Y.SPAM.TEST"], ["a@spam.test", "a@spam.test.org"]),
    (
        "newsletter-*@*",
        False,
        ["newsletter-42@shop.example", "Newsletter-X@a.b"],
        ["newsletter@shop.example"],
    ),
    (
        "user?@example.org",
        False,
        ["user1@example.org", "userX@example.org"],
        ["user12@example.org", "user@example.org"],
    ),
    ("SHOUT@Example.ORG", False, ["shout@example.org"], ["shout@example.com"]),
]


@pytest.mark.parametrize(
    ("pattern", "subdomains", "blocked", "passing"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_matching_rules(
    session_factory: Factory, pattern: str, subdomains: bool, blocked: list[str], passing: list[str]
) -> None:
    block(session_factory, pattern, subdomains=subdomains, reason="r")
    with session_factory() as session:
        rules = load_rules(session)
        for address in blocked:
            found = find_block(session, [address])
            assert found is not None, address
            assert found[0] == address.lower() and found[1].pattern == pattern.lower()
            # The intake's in-memory snapshot decides exactly as the database lookup.
            assert match_rules(rules, [address]) == (address.lower(), Rule(pattern.lower(), subdomains, "r"))
        for address in passing:
            assert find_block(session, [address]) is None, address
            assert match_rules(rules, [address]) is None, address


def test_the_first_blocked_address_is_named_and_empty_senders_are_skipped(session_factory: Factory) -> None:
    block(session_factory, "@spam.test")
    with session_factory() as session:
        assert find_block(session, ["", "<>", "ok@example.org", "x@spam.test"])[0] == "x@spam.test"  # type: ignore[index]
        assert find_block(session, ["", "<>"]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid pattern"),
        ("alice", "invalid pattern"),
        ("@localhost", "invalid pattern"),
        ("a b@example.org", "invalid pattern"),
        ("*", "would block everyone"),
        ("*@*", "would block everyone"),
        ("?@", "would block everyone"),
    ],
)
def test_invalid_patterns(text: str, message: str) -> None:
    with pytest.raises(InvalidPattern, match=message):
        check_pattern(text)


def test_the_intake_snapshot_sees_a_new_entry_after_its_refresh_time(session_factory: Factory) -> None:
    senders = BlockedSenders(session_factory, refresh_seconds=0.2)
    assert senders.find(["king@spam.test"]) is None
    block(session_factory, "@spam.test")
    assert senders.find(["king@spam.test"]) is None  # still the snapshot
    time.sleep(0.3)
    assert senders.find(["king@spam.test"]) == ("king@spam.test", Rule("@spam.test", False, ""))


# --- maildctl block -----------------------------------------------------------------------------------


def test_cli_add_list_remove(
    config_file: Path, session_factory: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(
        config_file, capsys, "block", "add", "@Spam.Test", "--subdomains", "--reason", "sells pills"
    ) == (
        0,
        "blocked @spam.test and its subdomains\n",
        "",
    )
    assert cli(config_file, capsys, "block", "add", "king@example.org")[0] == 0
    code, out, _ = cli(config_file, capsys, "block", "list", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [set(e) for e in entries] == [{"pattern", "subdomains", "reason", "added_by", "created_at"}] * 2
    assert [(e["pattern"], e["subdomains"], e["reason"]) for e in entries] == [
        ("@spam.test", True, "sells pills"),
        ("king@example.org", False, ""),
    ]
    assert all(e["added_by"] and e["created_at"].endswith("Z") for e in entries)
    code, out, _ = cli(config_file, capsys, "block", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["PATTERN", "SUBDOMAINS", "ADDED", "BY", "CREATED", "REASON"]
    assert "sells pills" in out.splitlines()[1]

    assert cli(config_file, capsys, "block", "remove", "KING@example.org") == (
        0,
        "unblocked king@example.org\n",
        "",
    )
    with session_factory() as session:
        assert [e.pattern for e in session.scalars(select(BlockEntry))] == ["@spam.test"]
        audit = [
            (a.action, a.detail["pattern"], a.actor)
            for a in session.scalars(select(AuditLog).order_by(AuditLog.id))
        ]
    actor = entries[0]["added_by"]
    assert audit == [
        ("block_add", "@spam.test", actor),
        ("block_add", "king@example.org", actor),
        ("block_remove", "king@example.org", actor),
    ]


def test_cli_errors_are_one_line(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(config_file, capsys, "block", "add", "@spam.test")[0] == 0
    assert one_line_error(cli(config_file, capsys, "block", "add", "@SPAM.test")) == (
        "maildctl: @spam.test is blocked already: see 'maildctl block list'"
    )
    assert one_line_error(cli(config_file, capsys, "block", "add", "alice")).startswith(
        "maildctl: invalid pattern 'alice': give an address"
    )
    assert one_line_error(cli(config_file, capsys, "block", "add", "*@*")) == (
        "maildctl: pattern '*@*' would block everyone"
    )
    assert one_line_error(cli(config_file, capsys, "block", "add", "a@spam.example", "--subdomains")) == (
        "maildctl: --subdomains applies to a domain pattern like @example.com, not a@spam.example"
    )
    assert one_line_error(cli(config_file, capsys, "block", "remove", "nobody@example.org")) == (
        "maildctl: no blocklist entry 'nobody@example.org': see 'maildctl block list'"
    )


CAROL = {"LOGNAME": "carol"}


def test_cli_as_a_subprocess_records_the_os_user(config_file: Path, session_factory: Factory) -> None:
    proc = run_cli("maildctl", "block", "add", "x@spam.test", config=config_file, env=CAROL, subprocess=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "blocked x@spam.test\n", "")
    with session_factory() as session:
        [entry] = session.scalars(select(BlockEntry))
        [audit] = session.scalars(select(AuditLog))
    assert (entry.added_by, audit.actor, audit.action) == ("carol", "carol", "block_add")


# --- the stage ----------------------------------------------------------------------------------------


def assert_nothing_made(factory: Factory) -> None:
    with factory() as session:
        assert tickets(session) == [] and outbox(session) == []
        assert list(session.scalars(select(Message))) == []
        assert list(session.scalars(select(Contact))) == []  # identify never ran: no contact for a spammer


def test_a_blocked_from_address_is_archived_as_blocked(
    session_factory: Factory, cfg: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block(session_factory, "@spam.test", reason="sells pills")
    result = deliver(session_factory, cfg, mail(sender=SPAMMER), SUPPORT)
    assert (result.outcome, result.ticket_number, result.outbox_ids) == ("blocked", None, ())
    assert result.reason == "sender king@spam.test matches blocklist entry @spam.test: sells pills"
    assert_nothing_made(session_factory)
    with session_factory() as session:
        [row] = spool(session)
        assert (row.state, row.outcome, row.ticket_id) == ("done", "blocked", None)
        assert row.trace[-1]["stage"] == "blocked" and row.trace[-1]["stop"] == "blocked"
    code, out, _ = cli(config_file, capsys, "spool", "list", "--outcome", "blocked", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [row.id]


def test_a_blocked_envelope_sender_is_archived_as_blocked(session_factory: Factory, cfg: Config) -> None:
    block(session_factory, "*@*.spam.test", subdomains=False)
    # A respectable From header, a spammer's return path.
    result = deliver_from(session_factory, cfg, mail(), "bounce-123@mx.spam.test")
    assert result.outcome == "blocked"
    assert result.reason == "sender bounce-123@mx.spam.test matches blocklist entry *@*.spam.test"
    assert_nothing_made(session_factory)


def test_subdomain_entries_name_their_scope(session_factory: Factory, cfg: Config) -> None:
    block(session_factory, "@spam.test", subdomains=True)
    result = deliver(session_factory, cfg, mail(sender="x@mail.spam.test"), SUPPORT)
    assert result.reason == "sender x@mail.spam.test matches blocklist entry @spam.test (and subdomains)"


def test_senders_not_on_the_list_and_null_senders_pass(session_factory: Factory, cfg: Config) -> None:
    block(session_factory, "@spam.test")
    assert deliver_from(session_factory, cfg, mail(), "<>").outcome == "created"
    other = mail(message_id="<second@customer.example>", subject="Another")
    assert deliver_from(session_factory, cfg, other, "alice@customer.example").outcome == "created"


def test_maild_pipe_with_a_blocked_sender_exits_0_and_queues_nothing(
    session_factory: Factory, config_file: Path, cfg: Config
) -> None:
    block(session_factory, "king@spam.test")
    proc = run_cli(
        "maild",
        "pipe",
        "--recipient",
        SUPPORT,
        "--sender",
        "king@spam.test",
        config=config_file,
        stdin=mail(),
    )
    assert proc.returncode == 0, proc.stderr
    assert_nothing_made(session_factory)
    assert not [p for p in cfg.outgoing_maildir.rglob("*") if p.is_file()]  # nothing written out either


# --- ticket block-and-delete --------------------------------------------------------------------------


def _conversation(factory: Factory, cfg: Config) -> str:
    """A spam ticket with two mails, an attachment, a sub-customer and a queued auto-reply."""
    first = deliver(factory, cfg, with_attachment("<spam1@customer.example>"), SUPPORT)
    assert first.outcome == "created" and first.outbox_ids
    reply = mail(message_id="<spam2@customer.example>", extra=[("In-Reply-To", "<spam1@customer.example>")])
    assert deliver(factory, cfg, reply, SUPPORT).outcome == "replied"
    assert first.ticket_number is not None
    return first.ticket_number


def test_block_and_delete(
    session_factory: Factory, cfg: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    number = _conversation(session_factory, cfg)
    kept = deliver(session_factory, cfg, mail(sender="carol@other.example", message_id="<c@o>"), SUPPORT)
    code, out, err = cli(config_file, capsys, "ticket", "block-and-delete", number.lower())
    assert (code, err) == (0, "")
    assert out == f"{number} deleted, 2 message(s); alice@customer.example blocked\n"
    with session_factory() as session:
        assert [t.number for t in tickets(session)] == [kept.ticket_number]  # the other ticket untouched
        assert len(list(session.scalars(select(Message)))) == 1
        assert list(session.scalars(select(Attachment))) == []
        assert [p.contact.email for p in session.scalars(select(Participant))] == ["carol@other.example"]
        # The raw mails stay in the spool, no longer tied to a ticket.
        rows = spool(session)
        assert [(r.outcome, r.ticket_id is None) for r in rows] == [
            ("created", True),
            ("replied", True),
            ("created", False),
        ]
        # The spammer's auto-reply never goes out.
        spam_reply, carol_reply = outbox(session)
        assert (spam_reply.status, spam_reply.rcpt_to, spam_reply.failed_to) == (
            "failed",
            [],
            ["alice@customer.example"],  # the sender only: no agent had answered (issue 14)
        )
        assert spam_reply.last_error.startswith(f"cancelled: ticket {number} deleted as spam")
        assert carol_reply.status == "queued"
        [entry] = session.scalars(select(BlockEntry))
        assert (entry.pattern, entry.subdomains, entry.reason) == (
            "alice@customer.example",
            False,
            f"ticket {number} deleted as spam",
        )
        [audit] = session.scalars(select(AuditLog).where(AuditLog.action == "ticket_block_and_delete"))
        # The pipeline's entries for the ticket stay, unlinked (ticket_id SET NULL).
        history = session.scalars(
            select(AuditLog).where(AuditLog.action.in_(["ticket_created", "message_added"]))
        )
        assert sorted((a.action, a.ticket_id is None) for a in history) == [
            ("message_added", True),
            ("ticket_created", False),
            ("ticket_created", True),
        ]
    assert (audit.action, audit.ticket_id) == ("ticket_block_and_delete", None)
    assert audit.detail["number"] == number and audit.detail["customer"] == "alice@customer.example"
    assert audit.detail["messages"] == 2 and audit.detail["outbox_cancelled"] == [spam_reply.id]
    # The next mail from the customer is blocked.
    again = deliver(session_factory, cfg, mail(message_id="<spam3@customer.example>"), SUPPORT)
    assert again.outcome == "blocked"


def test_block_and_delete_with_a_reason_and_a_sender_blocked_already(
    session_factory: Factory, cfg: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = deliver(session_factory, cfg, mail(), SUPPORT).ticket_number
    bob = mail(sender="bob@other.example", message_id="<b@other.example>")
    second = deliver(session_factory, cfg, bob, SUPPORT).ticket_number
    assert first is not None and second is not None
    code, _, _ = cli(config_file, capsys, "ticket", "block-and-delete", first, "--reason", "phishing")
    assert code == 0
    # bob's ticket came before his address was blocked: deleted, the entry left as the admin wrote it.
    block(session_factory, "bob@other.example", reason="first word")
    code, out, _ = cli(config_file, capsys, "ticket", "block-and-delete", second)
    assert (code, out) == (0, f"{second} deleted, 1 message(s); bob@other.example was blocked already\n")
    with session_factory() as session:
        entries = {e.pattern: e.reason for e in session.scalars(select(BlockEntry))}
        audit = [
            a.detail["already_blocked"]
            for a in session.scalars(
                select(AuditLog).where(AuditLog.action == "ticket_block_and_delete").order_by(AuditLog.id)
            )
        ]
        assert tickets(session) == []
    assert entries == {"alice@customer.example": "phishing", "bob@other.example": "first word"}
    assert audit == [False, True]


def test_block_and_delete_takes_the_tickets_merged_into_it(
    session_factory: Factory, cfg: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = deliver(session_factory, cfg, mail(), SUPPORT).ticket_number
    second = deliver(
        session_factory, cfg, mail(message_id="<b@customer.example>", subject="Again"), SUPPORT
    ).ticket_number
    with transaction(session_factory) as session:
        survivor, merged = tickets(session)
        merged.merged_into_id = survivor.id
    # The merged number leads to the survivor: the whole conversation goes.
    code, out, _ = cli(config_file, capsys, "ticket", "block-and-delete", str(second))
    assert code == 0
    assert out == f"{first} deleted (with merged {second}), 2 message(s); alice@customer.example blocked\n"
    with session_factory() as session:
        assert tickets(session) == []


def test_block_and_delete_refuses_an_unknown_number(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert one_line_error(cli(config_file, capsys, "ticket", "block-and-delete", "SUP-99")) == (
        "maildctl: no ticket 'SUP-99': see 'maildctl ticket list'"
    )


# --- reject at intake -------------------------------------------------------------------------------


def rejecting(cfg: Config) -> Config:
    return dataclasses.replace(cfg, hygiene=Hygiene(blocked="reject"))


def assert_nothing_spooled(factory: Factory, cfg: Config) -> None:
    with factory() as session:
        assert spool(session) == []
    assert not cfg.spool_dir.exists() or not any(p.is_file() for p in cfg.spool_dir.rglob("*"))


def test_smtp_reject_mode_refuses_a_blocked_envelope_sender_at_mail(
    session_factory: Factory, cfg: Config
) -> None:
    block(session_factory, "@spam.test", reason="a secret of the admin's")

    async def scenario() -> list[str]:
        async with intake(rejecting(cfg), session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            answers = [await c.one("MAIL FROM:<King@Spam.Test>"), await c.one(f"RCPT TO:<{SUPPORT}>")]
            # The session goes on: the next transaction, from someone else, is accepted.
            answers += [
                await c.one("MAIL FROM:<alice@customer.example>"),
                await c.one(f"RCPT TO:<{SUPPORT}>"),
            ]
            answers += await c.data(mail())
            await c.close()
            return answers

    refused, rcpt, mail_ok, rcpt_ok, data_ok = run(scenario())
    assert refused == f"{REFUSED} <King@Spam.Test>: sender not accepted"
    assert "secret" not in refused
    assert rcpt.startswith("503")  # no sender, no recipient
    assert mail_ok == "250 2.1.0 OK" and rcpt_ok.startswith(OK) and data_ok.startswith("250 2.0.0")
    with session_factory() as session:
        [row] = spool(session)
        assert row.mail_from == "alice@customer.example"  # handle_MAIL set the envelope's sender


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_reject_mode_refuses_a_blocked_from_header_after_data_and_spools_nothing(
    protocol: str, session_factory: Factory, cfg: Config
) -> None:
    block(session_factory, "king@spam.test")
    raw = mail(sender=SPAMMER, to=f"{SUPPORT}, {SALES}")

    async def scenario() -> list[str]:
        async with intake(rejecting(cfg), session_factory) as srv:
            lmtp = protocol == "lmtp"
            c = await Client.connect(srv.lmtp_port if lmtp else srv.smtp_port)
            await c.greet("LHLO" if lmtp else "EHLO")
            assert (await c.one("MAIL FROM:<relay@forwarder.example>")).startswith(OK)
            assert (await c.one(f"RCPT TO:<{SUPPORT}>")).startswith(OK)
            assert (await c.one(f"RCPT TO:<{SALES}>")).startswith(OK)
            answers = await c.data(raw, count=2 if lmtp else 1)
            answers.append(await c.one("NOOP"))
            await c.close()
            assert srv.spooled == []
            return answers

    *answers, noop = run(scenario())
    assert answers == [f"{REFUSED} <king@spam.test>: sender not accepted"] * (2 if protocol == "lmtp" else 1)
    assert noop.startswith("250")
    assert_nothing_spooled(session_factory, cfg)


def test_reject_mode_accepts_a_null_sender_and_other_senders(session_factory: Factory, cfg: Config) -> None:
    block(session_factory, "@spam.test")

    async def scenario() -> list[str]:
        async with intake(rejecting(cfg), session_factory) as srv:
            c = await Client.connect(srv.lmtp_port)
            await c.greet("LHLO")
            answers = [await c.one("MAIL FROM:<>"), await c.one(f"RCPT TO:<{SUPPORT}>")]
            answers += await c.data(mail(sender="MAILER-DAEMON@mx.example.org"))
            await c.close()
            return answers

    assert all(a.startswith("250") for a in run(scenario()))


def test_archive_mode_accepts_a_blocked_sender_and_the_stage_archives_it(
    session_factory: Factory, cfg: Config
) -> None:
    assert cfg.hygiene.blocked == "archive"  # the default
    block(session_factory, "@spam.test")

    async def scenario() -> list[str]:
        async with intake(cfg, session_factory) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            answers = [await c.one("MAIL FROM:<king@spam.test>"), await c.one(f"RCPT TO:<{SUPPORT}>")]
            answers += await c.data(mail(sender=SPAMMER))
            await c.close()
            return answers

    assert all(a.startswith("250") for a in run(scenario()))
    with session_factory() as session:
        [row] = spool(session)
        assert row.mail_from == "king@spam.test"
    assert process(session_factory, cfg, row.id, NOW).outcome == "blocked"
    assert_nothing_made(session_factory)


def test_reject_mode_database_trouble_at_mail_answers_451(cfg: Config, tmp_path: Path) -> None:
    (tmp_path / "not-a-db").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'not-a-db'}")

    async def scenario() -> str:
        async with intake(rejecting(cfg), make_sessionmaker(engine)) as srv:
            c = await Client.connect(srv.smtp_port)
            await c.greet()
            answer = await c.one("MAIL FROM:<alice@customer.example>")
            await c.close()
            return answer

    try:
        assert run(scenario()).startswith(TRY_LATER)
    finally:
        engine.dispose()
