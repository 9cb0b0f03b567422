"""Canned replies: rendering (maild.tickets.canned), the desk-over-all-desks lookup, and maildctl canned."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.storage.models import AuditLog, Desk
from maild.tickets.canned import find_canned, firstname_of, render_canned
from tests.conftest import run_cli
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT

VARIABLES = {
    "ticket_title": "Printer on fire",
    "ticket_number": "SUP-25-01-7",
    "ticket_url": "https://help.example.com/t/SUP-25-01-7",
    "desk_name": "support",
    "customer_name": "Alice Smith",
}


def render(body: str) -> str:
    return render_canned(
        body, firstname="Alice", name="Alice Smith", email="alice@customer.example", variables=VARIABLES
    )


def ctl(config_file: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = run_cli("maildctl", *args, config=config_file, stdin=stdin)
    assert "Traceback" not in proc.stderr
    return proc


# --- rendering ------------------------------------------------------------------------------------


def test_every_placeholder_is_filled() -> None:
    body = (
        "Hello [FIRSTNAME],\n[NAME] <[EMAIL]>\n{{ ticket_title }} / {{ticket_number}} / {{  ticket_url }}\n"
        "{{ desk_name }} for {{ customer_name }}\n"
    )
    assert render(body) == (
        "Hello Alice,\nAlice Smith <alice@customer.example>\n"
        "Printer on fire / SUP-25-01-7 / https://help.example.com/t/SUP-25-01-7\n"
        "support for Alice Smith\n"
    )


@pytest.mark.parametrize(
    "body",
    [
        "{{ 7*7 }}",
        "{{ unknown }}",
        "{{ ticket_number|upper }}",
        "{% for x in y %}{{ x }}{% endfor %}",
        "{{ cfg.__class__ }}",
        "[firstname] [SURNAME]",
        "{ticket_number}",
    ],
)
def test_unknown_placeholders_and_template_syntax_stay_literal(body: str) -> None:
    assert render(body) == body


def test_only_the_ticket_variables_are_offered_and_values_are_not_expanded_again() -> None:
    out = render_canned(
        "{{ secret }} {{ ticket_number }} [NAME]",
        firstname="X",
        name="{{ ticket_url }} [EMAIL]",
        email="e@x.example",
        variables={"secret": "s3cr3t", "ticket_number": "[FIRSTNAME]"},
    )
    assert out == "{{ secret }} [FIRSTNAME] {{ ticket_url }} [EMAIL]"


def test_a_missing_or_empty_variable() -> None:
    out = render_canned("<{{ ticket_url }}>{{ desk_name }}", firstname="", name="", email="", variables={})
    assert out == "<{{ ticket_url }}>{{ desk_name }}"
    empty = render_canned("<{{ ticket_url }}>", firstname="", name="", email="", variables={"ticket_url": ""})
    assert empty == "<>"


@pytest.mark.parametrize(
    ("display_name", "email", "firstname"),
    [
        ("Alice Smith", "alice@customer.example", "Alice"),
        ("  Alice  ", "x@customer.example", "Alice"),
        ('"Bob Builder"', "b@x.example", "Bob"),
        ("Dr. Alice Smith", "a@x.example", "Dr."),  # titles are not second-guessed
        ("", "john.doe@example.com", "John"),
        (None, "JOHN_DOE@example.com", "John"),
        (None, "mary-ann@example.com", "Mary"),
        (None, "bob+help@example.com", "Bob"),
        (None, "<carol@example.com>", "Carol"),
        ("   ", "dave@example.com", "Dave"),
        (None, ".x@example.com", ".x"),
    ],
)
def test_firstname_of(display_name: str | None, email: str, firstname: str) -> None:
    assert firstname_of(display_name, email) == firstname


# --- maildctl canned ------------------------------------------------------------------------------


def _desks(config_file: Path) -> None:
    assert (
        ctl(config_file, "desk", "add", "support", "--address", SUPPORT, "--pattern", SUP_PATTERN).returncode
        == 0
    )
    assert (
        ctl(
            config_file, "desk", "add", "sales", "--address", "sales@example.com", "--pattern", "S-{{nr}}"
        ).returncode
        == 0
    )


def test_add_update_list_show_remove(
    config_file: Path, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    _desks(config_file)
    added = ctl(
        config_file,
        "canned",
        "add",
        "refund",
        "--all-desks",
        stdin=b"Hello [FIRSTNAME],\r\nrefunded.\r\n\r\n",
    )
    assert (added.returncode, added.stdout.strip()) == (0, "canned reply refund (all desks) added")
    body_file = tmp_path / "refund.txt"
    body_file.write_text("Support refund text\nsecond line\n", encoding="utf-8")
    own = ctl(config_file, "canned", "add", "refund", "--desk", "support", "--file", str(body_file))
    assert (own.returncode, own.stdout.strip()) == (0, "canned reply refund (desk support) added")
    update = ["canned", "add", "refund", "--desk", "support"]
    updated = run_cli("maildctl", *update, config=config_file, stdin=b"New text\n", subprocess=True)
    assert (updated.returncode, updated.stdout.strip()) == (0, "canned reply refund (desk support) updated")
    ctl(config_file, "canned", "add", "hello", "--desk", "sales", stdin=b"Hi")

    listed = json.loads(ctl(config_file, "canned", "list", "--json").stdout)
    assert [(e["name"], e["desk"], e["size"], e["first_line"]) for e in listed] == [
        ("hello", "sales", 2, "Hi"),
        ("refund", None, 28, "Hello [FIRSTNAME],"),
        ("refund", "support", 8, "New text"),
    ]
    assert all(e["updated_at"].endswith("Z") for e in listed)
    for_support = json.loads(ctl(config_file, "canned", "list", "--desk", "support", "--json").stdout)
    assert [(e["name"], e["desk"]) for e in for_support] == [("refund", None), ("refund", "support")]
    table = ctl(config_file, "canned", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "DESK", "SIZE", "UPDATED", "FIRST", "LINE"]
    assert "(all desks)" in table[2]

    shown = json.loads(ctl(config_file, "canned", "show", "refund", "--json").stdout)
    assert (shown["desk"], shown["body"]) == (None, "Hello [FIRSTNAME],\nrefunded.")
    as_support = json.loads(
        ctl(config_file, "canned", "show", "refund", "--desk", "support", "--json").stdout
    )
    assert (as_support["desk"], as_support["body"]) == ("support", "New text")
    as_sales = json.loads(ctl(config_file, "canned", "show", "refund", "--desk", "sales", "--json").stdout)
    assert as_sales["desk"] is None  # sales has no own one: the all-desks one
    only_one = ctl(config_file, "canned", "show", "hello")  # a single desk's: unambiguous without --desk
    assert only_one.returncode == 0
    assert only_one.stdout.splitlines()[:2] == ["name:    hello", "desk:    sales"]
    assert only_one.stdout.endswith("\nHi\n")

    removed = ctl(config_file, "canned", "remove", "refund", "--desk", "support")
    assert (removed.returncode, removed.stdout.strip()) == (0, "canned reply refund (desk support) removed")
    after = json.loads(ctl(config_file, "canned", "show", "refund", "--desk", "support", "--json").stdout)
    assert after["desk"] is None

    with session_factory() as session:
        log = session.scalars(
            select(AuditLog).where(AuditLog.action.like("canned_%")).order_by(AuditLog.id)
        ).all()
        assert [(a.actor, a.action, a.detail["name"], a.detail["desk"]) for a in log] == [
            ("maildctl", "canned_add", "refund", None),
            ("maildctl", "canned_add", "refund", "support"),
            ("maildctl", "canned_update", "refund", "support"),
            ("maildctl", "canned_add", "hello", "sales"),
            ("maildctl", "canned_remove", "refund", "support"),
        ]
        assert log[2].detail["previous_body"] == "Support refund text\nsecond line"
        assert log[4].detail["body"] == "New text"


def test_show_asks_for_a_desk_when_several_desks_have_the_name(config_file: Path) -> None:
    _desks(config_file)
    for desk in ("support", "sales"):
        ctl(config_file, "canned", "add", "hi", "--desk", desk, stdin=desk.encode())
    proc = ctl(config_file, "canned", "show", "hi")
    assert (proc.returncode, proc.stderr.strip()) == (
        1,
        "maildctl: canned reply 'hi' exists for desks sales, support: give --desk",
    )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "x"), b"body", "give either --desk DESK or --all-desks"),
        (("add", "x", "--desk", "support", "--all-desks"), b"body", "give either --desk DESK or --all-desks"),
        (("add", "x", "--desk", "nope"), b"body", "no desk named 'nope': see 'maildctl desk list'"),
        (("add", "x", "--all-desks"), b"", "the canned reply's body is empty"),
        (("add", "x", "--all-desks"), b" \n\r\n\t\n", "the canned reply's body is empty"),
        (("add", "x", "--all-desks"), b"\xff\xfe", "standard input is not UTF-8 text"),
        (("add", "x", "--all-desks", "--file", "/nonexistent/f"), None, "cannot read /nonexistent/f:"),
        (
            ("add", "a b", "--all-desks"),
            b"body",
            "invalid canned reply name 'a b': use 1-100 letters, digits and . _ -",
        ),
        (("add", "x" * 101, "--all-desks"), b"body", "invalid canned reply name"),
        (("add", "", "--all-desks"), b"body", "invalid canned reply name ''"),
        (("list", "--desk", "nope"), None, "no desk named 'nope'"),
        (("show", "missing"), None, "no canned reply 'missing': see 'maildctl canned list'"),
        (("show", "missing", "--desk", "support"), None, "no canned reply 'missing'"),
        (("show", "x", "--desk", "nope"), None, "no desk named 'nope'"),
        (
            ("remove", "missing", "--all-desks"),
            None,
            "no canned reply 'missing' for all desks: see 'maildctl canned list'",
        ),
        (("remove", "missing", "--desk", "support"), None, "no canned reply 'missing' for desk support"),
        (("remove", "missing"), None, "give either --desk DESK or --all-desks"),
        (("remove", "x", "--desk", "nope"), None, "no desk named 'nope'"),
    ],
)
def test_errors_are_one_line(
    config_file: Path, args: tuple[str, ...], stdin: bytes | None, message: str
) -> None:
    ctl(config_file, "desk", "add", "support", "--address", SUPPORT, "--pattern", SUP_PATTERN)
    proc = ctl(config_file, "canned", *args, stdin=stdin if stdin is not None else b"")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"maildctl: {message}")
    assert proc.stdout == ""


def test_remove_of_the_all_desks_one_keeps_the_desks_own(config_file: Path) -> None:
    _desks(config_file)
    ctl(config_file, "canned", "add", "hi", "--all-desks", stdin=b"global")
    ctl(config_file, "canned", "add", "hi", "--desk", "sales", stdin=b"sales")
    assert ctl(config_file, "canned", "remove", "hi", "--all-desks").returncode == 0
    listed = json.loads(ctl(config_file, "canned", "list", "--json").stdout)
    assert [(e["name"], e["desk"]) for e in listed] == [("hi", "sales")]


def test_find_canned_prefers_the_desks_own(config_file: Path, session_factory: sessionmaker[Session]) -> None:
    _desks(config_file)
    ctl(config_file, "canned", "add", "refund", "--all-desks", stdin=b"global text")
    ctl(config_file, "canned", "add", "refund", "--desk", "support", stdin=b"support text")
    ctl(config_file, "canned", "add", "only-sales", "--desk", "sales", stdin=b"sales text")
    with session_factory() as session:
        support, sales = (
            session.scalars(select(Desk).where(Desk.name == n)).one() for n in ("support", "sales")
        )
        found = find_canned(session, support.id, "refund")
        assert found is not None and found.body == "support text"
        found = find_canned(session, sales.id, "refund")
        assert found is not None and found.body == "global text"
        found = find_canned(session, None, "refund")
        assert found is not None and found.body == "global text"
        found = find_canned(session, sales.id, "only-sales")
        assert found is not None and found.body == "sales text"
        assert find_canned(session, support.id, "only-sales") is None  # another desk's is not offered
        assert find_canned(session, support.id, "Refund") is None  # names match exactly
        assert find_canned(session, support.id, "missing") is None
