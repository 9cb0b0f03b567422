"""maildctl rule (issue 19 item 1): add, list, show, set, move, remove, test; one-line errors for every wrong
expression; audits with the admin's OS user; contact attr and desk --business-hours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.storage.models import AuditLog, Message, Rule, Ticket
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, mail, make_agent, make_desk

Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def _desk(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, "anna@example.com", "Anna", ["support"])


def add(config_file: Path, name: str, *extra: str) -> str:
    return ok(ctl(config_file, "rule", "add", "support", name, *extra))


def test_add_list_show_set_move_remove(session_factory: Factory, config_file: Path) -> None:
    add(
        config_file,
        "vip",
        "--on",
        "ticket created",
        "--if",
        "sender domain is example.org",
        "--then",
        "priority high",
        "tag vip",
    )
    add(
        config_file,
        "refund",
        "--on",
        "customer replied",
        "--if",
        "subject contains refund",
        "--then",
        "tag refund",
        "stop",
        "--position",
        "1",
    )
    add(config_file, "stale", "--on", "24h in waiting", "--then", "notify agents")
    listed = json.loads(ok(ctl(config_file, "rule", "list", "--json")))
    assert [(r["name"], r["position"]) for r in listed] == [("refund", 1), ("vip", 2), ("stale", 3)]
    assert listed[2]["trigger"] == "24 hours in waiting" and listed[1]["actions"] == [
        "priority high",
        "tag vip",
    ]
    table = ok(ctl(config_file, "rule", "list", "support"))
    assert "on ticket created if sender domain is example.org → priority high; tag vip" in table
    shown = json.loads(ok(ctl(config_file, "rule", "show", "support", "vip", "--json")))
    assert shown["fired"] == 0 and shown["active"] is True and shown["desk"] == "support"
    assert "  if: sender domain is example.org" in ok(ctl(config_file, "rule", "show", "support", "vip"))
    ok(ctl(config_file, "rule", "set", "support", "vip", "--if", "customer is new", "--inactive"))
    ok(ctl(config_file, "rule", "move", "support", "stale", "--to", "1"))
    ok(ctl(config_file, "rule", "set", "support", "refund", "--no-conditions", "--position", "3"))
    listed = json.loads(ok(ctl(config_file, "rule", "list", "support", "--json")))
    assert [(r["name"], r["position"], r["active"]) for r in listed] == [
        ("stale", 1, True),
        ("vip", 2, False),
        ("refund", 3, True),
    ]
    assert listed[1]["conditions"] == ["customer is new"] and listed[2]["conditions"] == []
    ok(ctl(config_file, "rule", "remove", "support", "vip"))
    with session_factory() as session:
        assert [r.position for r in session.scalars(select(Rule).order_by(Rule.position))] == [1, 2]
        actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
        actors = {a.actor for a in session.scalars(select(AuditLog).where(AuditLog.action.like("rule_%")))}
    assert actions.count("rule_add") == 3 and "rule_set" in actions and "rule_move" in actions
    assert (
        "rule_remove" in actions
        and "maildctl" not in actors
        and all(not a.startswith("rule:") for a in actors)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--on", "when it rains", "--then", "tag x"],
            "invalid trigger 'when it rains': use one of: ticket created",
        ),
        (["--on", "0 hours in open", "--then", "tag x"], "invalid hours '0': give a number above 0"),
        (
            ["--on", "created", "--if", "subject is x", "--then", "tag x"],
            "invalid condition 'subject is x': use one",
        ),
        (
            ["--on", "created", "--if", "body matches (a", "--then", "tag x"],
            "invalid pattern '(a': missing )",
        ),
        (["--on", "created", "--if", "body matches (a)\\1", "--then", "tag x"], "no backreferences"),
        (
            ["--on", "created", "--if", "priority is huge", "--then", "tag x"],
            "invalid priority 'huge': use one of",
        ),
        (
            ["--on", "created", "--if", "contact since within soon days", "--then", "tag x"],
            "invalid days 'soon'",
        ),
        (["--on", "created", "--then", "explode"], "invalid action 'explode': use one of: status S"),
        (["--on", "created", "--then", "cc nobody"], "invalid cc 'nobody': give an address"),
        (["--on", "created", "--then", "tag a b"], "invalid action 'tag a b'"),
        (["--on", "created"], "the rule does nothing: give at least one action"),
        (["--on", "created", "--then", "status nope"], "desk support has no status 'nope' (it has open"),
        (["--on", "status changed to nope", "--then", "tag x"], "desk support has no status 'nope'"),
        (["--on", "created", "--then", "category Billing"], "desk support has no category 'Billing'"),
        (["--on", "created", "--then", "assign Zed"], "no single active agent 'Zed' on desk support"),
        (["--on", "created", "--then", "send nonesuch"], "no mail template 'nonesuch' for desk support"),
        (["--on", "created", "--then", "tag x", "--position", "0"], "invalid --position 0"),
    ],
)
def test_wrong_expressions_are_one_line(config_file: Path, args: list[str], message: str) -> None:
    line = one_line_error(ctl(config_file, "rule", "add", "support", "r1", *args))
    assert message in line, line


def test_other_errors_are_one_line(config_file: Path) -> None:
    add(config_file, "one", "--on", "created", "--then", "tag x")
    for args, message in [
        (["add", "support", "one", "--on", "created", "--then", "tag y"], "already has a rule 'one'"),
        (
            ["add", "support", "bad name", "--on", "created", "--then", "tag y"],
            "invalid rule name 'bad name'",
        ),
        (["add", "nodesk", "r", "--on", "created", "--then", "tag y"], "no desk named 'nodesk'"),
        (["show", "support", "two"], "no rule 'two' on desk support"),
        (["set", "support", "one"], "nothing to change"),
        (["set", "support", "one", "--active", "--inactive"], "either --active or --inactive"),
        (["set", "support", "one", "--then", "frob"], "invalid action 'frob'"),
        (["set", "support", "one", "--then", "webhook nosuch"], "no webhook 'nosuch'"),
        (["move", "support", "two", "--to", "1"], "no rule 'two'"),
        (["remove", "support", "two"], "no rule 'two'"),
        (["test", "support", "one", "/nonexistent.eml"], "cannot read /nonexistent.eml"),
        (["test", "nodesk", "one", "x.eml"], "no desk named 'nodesk'"),
        (["test", "two", "x.eml"], "no rule 'two' on any desk"),
        (["test", "x.eml"], "maildctl rule test [DESK] NAME FILE"),
    ]:
        assert message in one_line_error(ctl(config_file, "rule", *args)), args
    ok(ctl(config_file, "desk", "add", "sales", "--address", "sales@example.com", "--pattern", "S-{{nr}}"))
    ok(ctl(config_file, "rule", "add", "sales", "one", "--on", "ticket created", "--then", "tag x"))
    ambiguous = one_line_error(ctl(config_file, "rule", "test", "one", "x.eml"))
    assert "desks sales, support each have a rule 'one': maildctl rule test DESK one FILE" in ambiguous


def test_rule_test_is_a_dry_run(session_factory: Factory, config_file: Path, tmp_path: Path) -> None:
    ok(ctl(config_file, "contact", "add", "alice@customer.example"))
    ok(ctl(config_file, "contact", "attr", "alice@customer.example", "plan=gold", "old=1"))
    ok(ctl(config_file, "contact", "attr", "alice@customer.example", "old="))
    ok(ctl(config_file, "webhook", "add", "team", "http://127.0.0.1:9/hook"))
    add(
        config_file,
        "gold",
        "--on",
        "created",
        "--if",
        "contact plan is gold",
        "--if",
        "subject contains fire",
        "--if",
        "has attachments",
        "--then",
        "priority urgent",
        "assign round-robin",
        "webhook team",
    )
    path = tmp_path / "mail.eml"
    path.write_bytes(mail())
    out = ok(ctl(config_file, "rule", "test", "support", "gold", str(path)))
    assert "  yes  contact plan is gold\n  yes  subject contains fire\n  no   has attachments\n" in out
    assert "→ does not fire; it would: set priority urgent; assign to round-robin; call webhook team" in out
    assert ok(ctl(config_file, "rule", "test", "gold", str(path))) == out  # the form: NAME FILE
    result = json.loads(ok(ctl(config_file, "rule", "test", "support", "gold", str(path), "--json")))
    assert result["fires"] is False and [c["holds"] for c in result["conditions"]] == [True, True, False]
    with session_factory() as session:
        assert session.scalar(select(Ticket.id)) is None and session.scalar(select(Message.id)) is None
    contacts = json.loads(ok(ctl(config_file, "contact", "list", "--json")))
    assert contacts[0]["attributes"] == {"plan": "gold"}


def test_contact_attr_and_business_hours_errors(config_file: Path) -> None:
    ok(ctl(config_file, "contact", "add", "alice@customer.example"))
    assert "write KEY=VALUE" in one_line_error(
        ctl(config_file, "contact", "attr", "alice@customer.example", "x")
    )
    assert "no contact bob@x.example" in one_line_error(
        ctl(config_file, "contact", "attr", "bob@x.example", "a=1")
    )
    for hours, message in [
        ("mon-fri 9-17", "write them like 'mon-fri 09:00-17:00"),
        ("mon-fry 09:00-17:00", "invalid day 'fry'"),
        ("mon 17:00-09:00", "the end must be after the start"),
        ("mon 09:00-25:00", "invalid time"),
    ]:
        line = one_line_error(ctl(config_file, "desk", "set", "support", "--business-hours", hours))
        assert message in line, line
    ok(
        ctl(
            config_file, "desk", "set", "support", "--business-hours", "Mon-Fri 09:00-17:00,  sat 10:00-12:00"
        )
    )
    shown = json.loads(ok(ctl(config_file, "desk", "show", "support", "--json")))
    assert shown["business_hours"] == "mon-fri 09:00-17:00, sat 10:00-12:00"


def test_contact_attributes_are_exported_and_forgotten(session_factory: Factory, config_file: Path) -> None:
    from maild.storage.models import Contact

    ok(ctl(config_file, "contact", "add", "alice@customer.example"))
    ok(ctl(config_file, "contact", "attr", "alice@customer.example", "phone=+36 1 234 5678"))
    exported = json.loads(ok(ctl(config_file, "contact", "export", "alice@customer.example")))
    assert exported["contact"]["attributes"] == {"phone": "+36 1 234 5678"}
    ok(ctl(config_file, "contact", "forget", "alice@customer.example", "--yes"))
    with session_factory() as session:
        assert [c.attributes for c in session.scalars(select(Contact))] == [{}]
