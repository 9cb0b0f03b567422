"""Desks an admin can fix: rename, remove (or move their tickets), addresses added and removed, a new number
pattern whose old numbers keep threading, a sender name — each audited and seen by a running daemon."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import select

from maild.config import Config
from maild.storage.models import AuditLog, Desk, DeskAddress, Message, RetiredPattern, Ticket
from tests.conftest import run_cli
from tests.daemon import Factory, free_port, send, start_fixture, wait_until, write_config  # noqa: F401
from tests.pipeline.helpers import deliver, mail, make_desk, tickets
from tests.test_cli import Ctl, as_json, ok, one_line_error

SUPPORT, HELP = "support@example.com", "help@example.com"
BAD_NAMES = ["../escape", ".hidden", "_under", "with space", "Ünicode", "a/b", "x" * 101]


@pytest.fixture
def ctl(config_file: Path) -> Ctl:
    return lambda *args: run_cli("maildctl", *args, config=config_file)


@pytest.fixture
def support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], "TK-{{nr}}")


def audit(factory: Factory, action: str) -> list[dict[str, Any]]:
    with factory() as s:
        return [row.detail for row in s.scalars(select(AuditLog).where(AuditLog.action == action))]


def new_ticket(factory: Factory, cfg: Config, n: int, to: str = SUPPORT, subject: str = "Help") -> str:
    result = deliver(factory, cfg, mail(to=to, subject=subject, message_id=f"<m{n}@customer.example>"), to)
    assert result.outcome == "created", result
    assert result.ticket_number is not None
    return result.ticket_number


# --- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["support", "Billing-2", "team_a", "7days"])
def test_the_names_the_rule_allows_are_accepted(ctl: Ctl, name: str) -> None:
    ok(ctl("desk", "add", name, "--address", f"{name.lower()}@example.com", "--pattern", "N-{{nr}}"))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_the_rule_refuses_get_the_rule_in_the_message(ctl: Ctl, name: str) -> None:
    line = one_line_error(ctl("desk", "add", name, "--address", "x@example.com", "--pattern", "N-{{nr}}"))
    assert f"invalid desk name {name!r}: use 1-100 letters (A-Z, a-z), digits, '-' or '_'" in line


# --- rename -----------------------------------------------------------------------------------------


def test_rename_moves_the_template_overrides_and_is_audited(
    ctl: Ctl, cfg: Config, session_factory: Factory, support: None
) -> None:
    overrides = cfg.template_dir / "support"
    overrides.mkdir(parents=True)
    (overrides / "ticket_created.subject.j2").write_text("[{{ ticket_number }}] got it\n")
    out = ok(ctl("desk", "rename", "support", "helpdesk")).stdout
    assert "desk support is now helpdesk" in out
    assert (cfg.template_dir / "helpdesk" / "ticket_created.subject.j2").exists()
    assert not overrides.exists()
    assert audit(session_factory, "desk_rename") == [
        {"desk": "helpdesk", "before": "support", "after": "helpdesk"}
    ]
    # The renamed desk keeps its address, tickets and overrides.
    number = new_ticket(session_factory, cfg, 1)
    with session_factory() as s:
        [ticket] = tickets(s)
        assert (ticket.number, ticket.desk.name) == (number, "helpdesk")
    assert one_line_error(ctl("desk", "rename", "nosuch", "x")) == (
        "maildctl: no desk named 'nosuch': see 'maildctl desk list'"
    )
    make_desk(session_factory, "sales", ["sales@example.com"], "S-{{nr}}")
    assert "desk 'sales' exists already" in one_line_error(ctl("desk", "rename", "helpdesk", "SALES"))


# --- remove -----------------------------------------------------------------------------------------


def test_remove_is_refused_while_the_desk_has_tickets(
    ctl: Ctl, cfg: Config, session_factory: Factory, support: None
) -> None:
    new_ticket(session_factory, cfg, 1)
    line = one_line_error(ctl("desk", "remove", "support"))
    assert (
        line == "maildctl: desk 'support' has 1 ticket(s): give --move-to DESK to move them to another desk"
    )
    with session_factory() as s:
        assert s.scalars(select(Desk.name)).all() == ["support"]


def test_remove_an_empty_desk(ctl: Ctl, session_factory: Factory, support: None) -> None:
    ok(ctl("desk", "remove", "support"))
    with session_factory() as s:
        assert s.scalars(select(Desk)).all() == []
        assert s.scalars(select(DeskAddress)).all() == []
    [detail] = audit(session_factory, "desk_remove")
    assert (detail["desk"], detail["tickets"], detail["addresses"]) == ("support", 0, [SUPPORT])


def test_remove_with_move_to_moves_tickets_and_their_numbers_keep_threading(
    ctl: Ctl, cfg: Config, session_factory: Factory, support: None
) -> None:
    make_desk(session_factory, "sales", ["sales@example.com"], "S-{{nr}}")
    number = new_ticket(session_factory, cfg, 1)
    assert number == "TK-1"
    assert (
        "its 1 ticket(s) moved to sales" in ok(ctl("desk", "remove", "support", "--move-to", "sales")).stdout
    )
    with session_factory() as s:
        [ticket] = tickets(s)
        assert (ticket.number, ticket.desk.name) == ("TK-1", "sales")
        assert {m.desk_id for m in s.scalars(select(Message))} == {ticket.desk_id}
        assert s.scalars(select(RetiredPattern.pattern)).all() == ["TK-{{nr}}"]
    # A customer's reply quoting the old number, to the remaining desk, joins the moved ticket.
    reply = mail(to="sales@example.com", subject="Re: [TK-1] Help", message_id="<r1@customer.example>")
    result = deliver(session_factory, cfg, reply, "sales@example.com")
    assert (result.outcome, result.ticket_number) == ("replied", "TK-1")
    # The removed desk's address is no desk's any more, and a desk cannot take its own tickets.
    with session_factory() as s:
        assert s.scalars(select(DeskAddress.address)).all() == ["sales@example.com"]
    assert one_line_error(ctl("desk", "remove", "sales", "--move-to", "sales")).startswith(
        "maildctl: --move-to"
    )


# --- addresses --------------------------------------------------------------------------------------


def test_address_add_and_remove(ctl: Ctl, cfg: Config, session_factory: Factory, support: None) -> None:
    ok(ctl("desk", "address", "add", "support", "Help@Example.com"))
    assert [d["addresses"] for d in as_json(ctl("desk", "list", "--json"))] == [[SUPPORT, HELP]]
    assert new_ticket(session_factory, cfg, 1, to=HELP) == "TK-1"
    assert "belongs to desk 'support' already" in one_line_error(
        ctl("desk", "address", "add", "support", HELP)
    )
    out = ok(ctl("desk", "address", "remove", "support", SUPPORT)).stdout
    assert "the desk's mail now comes from help@example.com" in out
    assert "only address" in one_line_error(ctl("desk", "address", "remove", "support", HELP))
    assert "has no address" in one_line_error(ctl("desk", "address", "remove", "support", "x@example.com"))
    assert "plain address" in one_line_error(ctl("desk", "address", "add", "support", "a+b@example.com"))
    assert audit(session_factory, "desk_address_add") == [{"desk": "support", "address": HELP}]
    assert audit(session_factory, "desk_address_remove") == [{"desk": "support", "address": SUPPORT}]


# --- number patterns --------------------------------------------------------------------------------


def test_a_new_pattern_keeps_counting_and_old_numbers_thread(
    ctl: Ctl, cfg: Config, session_factory: Factory, support: None
) -> None:
    assert [new_ticket(session_factory, cfg, n) for n in (1, 2, 3)] == ["TK-1", "TK-2", "TK-3"]
    ok(ctl("desk", "set", "support", "--pattern", "HD-{{nr}}"))
    assert new_ticket(session_factory, cfg, 4) == "HD-4"  # the desk's counter goes on
    shown = as_json(ctl("desk", "show", "support", "--json"))
    assert shown["pattern"] == "HD-{{nr}}"
    assert [r["pattern"] for r in shown["retired_patterns"]] == ["TK-{{nr}}"]
    reply = mail(subject="Re: [TK-2] Help", message_id="<r2@customer.example>")
    assert deliver(session_factory, cfg, reply, SUPPORT).ticket_number == "TK-2"
    [detail] = audit(session_factory, "desk_set")
    assert detail["before"]["pattern"] == "TK-{{nr}}" and detail["after"]["pattern"] == "HD-{{nr}}"
    # Back to the old pattern: the counter is past every number it rendered, so no number comes twice.
    ok(ctl("desk", "set", "support", "--pattern", "TK-{{nr}}"))
    assert new_ticket(session_factory, cfg, 5) == "TK-5"


def test_a_pattern_with_new_counters_is_seeded_past_existing_numbers(
    ctl: Ctl, cfg: Config, session_factory: Factory
) -> None:
    make_desk(session_factory, "support", [SUPPORT], "TK-{{yy}}-{{nr-y}}")
    numbers = [new_ticket(session_factory, cfg, n) for n in (1, 2)]
    year = dt.datetime.now(dt.UTC).strftime("%y")
    assert numbers == [f"TK-{year}-1", f"TK-{year}-2"]
    # Same shape, another counter: it must not hand out TK-yy-1 again.
    ok(ctl("desk", "set", "support", "--pattern", "TK-{{yy}}-{{nr}}"))
    assert new_ticket(session_factory, cfg, 3) == f"TK-{year}-3"


def test_a_pattern_that_could_produce_another_desks_numbers_is_refused(
    ctl: Ctl, session_factory: Factory, support: None
) -> None:
    make_desk(session_factory, "sales", ["sales@example.com"], "S-{{nr}}")
    ok(ctl("desk", "set", "sales", "--pattern", "SL-{{nr}}"))  # S-{{nr}} retired, still sales' numbers
    line = one_line_error(ctl("desk", "set", "support", "--pattern", "S-{{nr}}"))
    assert "could produce numbers of desk 'sales' (its retired pattern S-{{nr}}" in line
    with session_factory() as s:
        assert s.scalars(select(Desk.pattern).where(Desk.name == "support")).one() == "TK-{{nr}}"


# --- sender name ------------------------------------------------------------------------------------


def test_sender_name_is_on_the_desks_mail(
    ctl: Ctl, cfg: Config, session_factory: Factory, support: None
) -> None:
    ok(ctl("desk", "set", "support", "--sender-name", "ACME Support"))
    assert as_json(ctl("desk", "show", "support", "--json"))["sender_name"] == "ACME Support"
    new_ticket(session_factory, cfg, 1)
    from tests.pipeline.helpers import outbox

    with session_factory() as s:
        [reply] = outbox(s)
        assert b"From: ACME Support <support@example.com>" in bytes(reply.raw)
    assert "one line" in one_line_error(ctl("desk", "set", "support", "--sender-name", "a\nBcc: x@evil"))


# --- a running daemon sees the changes ----------------------------------------------------------------


def test_a_running_daemon_picks_up_address_changes_without_restart(
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    config_file: Path,
    session_factory: Factory,
    support: None,
    start: Any,
) -> None:
    port = free_port()
    serve = start(
        write_config(tmp_path / "serve.toml", data_dir, database_url, listen={"smtp": f"127.0.0.1:{port}"})
    )
    assert send(port, mail(message_id="<a@customer.example>"), [SUPPORT]).startswith("2.0.0")

    ok(run_ctl(config_file, "desk", "address", "add", "support", HELP))
    assert send(port, mail(to=HELP, message_id="<b@customer.example>"), [HELP]).startswith("2.0.0")
    # Both are tickets before the address goes: a mail accepted for an address that is removed before
    # the pipeline routes it ends `unknown_recipient` (kept in the spool; a known gap, issue 16's note).
    wait_until(lambda: len(all_tickets(session_factory)) == 2, 10, "the two accepted mails ticketed")

    ok(run_ctl(config_file, "desk", "address", "remove", "support", SUPPORT))

    def refused() -> bool:
        try:
            send(port, mail(message_id="<c@customer.example>"), [SUPPORT])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return exc.recipients[0].code == 550
        return False

    wait_until(refused, 10, "the removed address refused with 550")
    assert len(all_tickets(session_factory)) == 2
    assert serve.stop() == 0


def all_tickets(factory: Factory) -> list[Ticket]:
    with factory() as s:
        return tickets(s)


def run_ctl(config: Path, *args: str) -> Any:
    # The admin's real maildctl beside the real daemon, as the admin runs it.
    return run_cli("maildctl", *args, config=config, subprocess=True)
