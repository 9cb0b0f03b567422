"""Issue 13, point 8: mail rules that surprised. Every bad command line of an agent's reply is reported in
one answer; automatic mail (out-of-office) neither reopens a ticket nor moves its activity time, and is
never sent the closing notice; `maildctl agent add` does not silently rename an existing agent; `maildctl
ticket list` cuts long subjects to the terminal's width, and only on a terminal."""

from __future__ import annotations

import datetime as dt
import os
import pty
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from maild.admin_cli.tickets import MIN_LAST_COLUMN, display_width, fit_last_column, shorten
from maild.config import Config
from maild.pipeline.runner import Result
from maild.storage.db import transaction
from maild.storage.models import Agent, Desk, Message, OutboxMessage
from maild.tickets.autoclose import auto_close
from tests.conftest import BIN, run_cli
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk, ticket
from tests.test_agent_replies import ANNA, BOB, NUMBER, notice_id, queued, reply, state, text_of

Factory = sessionmaker[Session]
ALICE = "alice@customer.example"
CAROL = "carol@customer.example"
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)


@pytest.fixture
def desk(session_factory: Factory, cfg: Config) -> None:
    """Support (auto-close after a day) with agents Anna and Bob; ticket SUP-26-03-1 from Alice, Carol
    in Cc (a sub-customer)."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, ANNA, "Anna", ["support"])
    make_agent(session_factory, BOB, "Bob", ["support"])
    with transaction(session_factory) as s:
        s.execute(update(Desk).values(auto_close_hours=24))
    first = mail(extra=[("Cc", f"Carol Client <{CAROL}>")])
    assert deliver(session_factory, cfg, first, SUPPORT).ticket_number == NUMBER


# --- every bad command line in one answer --------------------------------------------------------------


@pytest.mark.usefixtures("desk")
@pytest.mark.parametrize(
    ("body", "named"),
    [
        # a syntax error (unknown status) no longer hides the unknown agent of the next line
        (
            "#status nosuchstatus\n#assign nobody\n#priority high\n\nText.\n",
            [
                "line 1: #status nosuchstatus",
                "'nosuchstatus' is not one of",
                "line 2: #assign nobody",
                "no active agent 'nobody'",
            ],
        ),
        # nor the other way round, and the canned reply is checked too; in line order
        (
            "#assign nobody\n#stauts waiting\n#canned nope\n\nText.\n",
            [
                "line 1: #assign nobody",
                "line 2: #stauts waiting",
                "did you mean #status?",
                "line 3: #canned nope",
                "no canned reply 'nope'",
            ],
        ),
    ],
)
def test_every_bad_command_line_is_named_in_one_answer(
    session_factory: Factory, cfg: Config, body: str, named: list[str]
) -> None:
    result = reply(session_factory, cfg, body)
    assert result.outcome == "refused"
    [answer] = queued(session_factory, result, "command_errors")  # one mail, not one per line
    assert answer.rcpt_to == [ANNA]
    text = text_of(answer)
    positions = [text.index(words) for words in named]
    assert positions == sorted(positions)
    bad_lines = [line for line in text.splitlines() if line.startswith("line ")]
    assert bad_lines == [n for n in named if n.startswith("line ")]
    # nothing carried out, nothing relayed
    assert state(session_factory) == ("open", "normal", None)
    assert queued(session_factory, result, "agent_reply") == []


# --- automatic mail: no reopening, no activity, no closing notice ------------------------------------------


def out_of_office(factory: Factory, cfg: Config, sender: str, at: dt.datetime, mid: str) -> Result:
    """`sender`'s vacation responder answering the desk's latest mail on the ticket."""
    with factory() as s:
        last = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()
        assert last is not None
        in_reply_to = last.message_id
    raw = mail(
        sender=sender,
        subject=f"Automatic reply: Re: [{NUMBER}] Printer on fire",
        body="I am out of the office until Monday.\n",
        message_id=mid,
        extra=[("Auto-Submitted", "auto-replied"), ("In-Reply-To", in_reply_to), ("References", in_reply_to)],
    )
    return deliver(factory, cfg, raw, SUPPORT, now=at)


def activity(factory: Factory) -> tuple[str, dt.datetime]:
    with factory() as s:
        t = ticket(s, NUMBER)
        return t.status, t.updated_at


def notes(factory: Factory) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(Message.text).where(Message.kind == "system").order_by(Message.id)))


@pytest.mark.usefixtures("desk")
def test_an_out_of_office_reply_does_not_reopen_a_closed_ticket(
    session_factory: Factory, cfg: Config
) -> None:
    assert reply(session_factory, cfg, "#close\n\nThe printer is replaced.\n").outcome == "replied"
    closed = activity(session_factory)
    assert closed == ("closed", (NOW + 10 * MINUTE).replace(tzinfo=None))
    with session_factory() as s:
        before = s.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()))

    result = out_of_office(
        session_factory, cfg, f"Alice Example <{ALICE}>", NOW + 2 * DAY, "<ooo-1@customer.example>"
    )
    assert result.ticket_number == NUMBER  # it joined the ticket, kept as history
    assert activity(session_factory) == closed  # still closed, and no newer activity
    with session_factory() as s:
        stored = s.scalars(select(Message).where(Message.message_id == "<ooo-1@customer.example>")).one()
        assert stored.automatic == "out-of-office"
        # nobody answered it: no auto-reply to the responder
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.id > before)).all()
        assert [r.template for r in rows if ALICE in r.rcpt_to] == []


@pytest.mark.usefixtures("desk")
def test_a_waiting_ticket_answered_by_a_responder_is_closed_without_notice_to_it(
    session_factory: Factory, cfg: Config
) -> None:
    assert reply(session_factory, cfg, "We sent a new printer.\n").outcome == "replied"
    waiting = activity(session_factory)
    assert waiting[0] == "waiting"

    out_of_office(session_factory, cfg, f"Alice Example <{ALICE}>", NOW + DAY / 2, "<ooo-2@customer.example>")
    assert (
        activity(session_factory) == waiting
    )  # not reopened; auto-close still counts from the agent's reply

    due = waiting[1] + DAY
    assert auto_close(session_factory, cfg, due - MINUTE).closed == []
    result = auto_close(session_factory, cfg, due)
    assert result.closed == [NUMBER]
    with session_factory() as s:
        [closing] = [s.get(OutboxMessage, i) for i in result.outbox_ids]
        assert closing is not None and closing.template == "auto_close"
        assert closing.rcpt_to == [CAROL]  # Carol (a person) is told; Alice's responder is not
    [note] = [n for n in notes(session_factory) if n.startswith("Closed automatically")]
    assert f"No closing notice to {ALICE}" in note and "automatic" in note


def answer(factory: Factory, cfg: Config, body: str, at: int, mid: str) -> Result:
    """Anna answers the notice of the customer's newest mail."""
    newest = notice_id(factory, ANNA, "customer_reply_notice")
    return reply(factory, cfg, body, at=at, message_id=mid, in_reply_to=newest)


@pytest.mark.usefixtures("desk")
def test_only_an_address_whose_latest_mail_is_automatic_is_left_out(
    session_factory: Factory, cfg: Config
) -> None:
    """Carol's responder answered too, then Alice wrote herself: Alice is told, Carol is not; with
    everyone's latest mail automatic, the ticket is closed without any mail."""
    assert reply(session_factory, cfg, "We sent a new printer.\n").outcome == "replied"
    out_of_office(session_factory, cfg, f"Alice Example <{ALICE}>", NOW + DAY / 4, "<ooo-3@customer.example>")
    out_of_office(session_factory, cfg, f"Carol Client <{CAROL}>", NOW + DAY / 4, "<ooo-4@client.example>")
    human = mail(
        subject=f"Re: [{NUMBER}] Printer on fire",
        body="It works, thanks!\n",
        message_id="<back@customer.example>",
    )
    assert deliver(session_factory, cfg, human, SUPPORT, now=NOW + DAY / 2).outcome == "replied"
    assert activity(session_factory)[0] == "open"  # a person's reply does reopen
    assert (
        answer(session_factory, cfg, "Glad to hear.\n", 24 * 60, "<reply-2@example.com>").outcome == "replied"
    )

    result = auto_close(session_factory, cfg, (NOW + 2 * DAY + MINUTE).replace(tzinfo=None))
    assert result.closed == [NUMBER]
    with session_factory() as s:
        [closing] = [s.get(OutboxMessage, i) for i in result.outbox_ids]
        assert closing is not None and closing.rcpt_to == [ALICE]

    # reopened by Alice, answered, and then only responders answered: closed silently
    again = mail(
        subject=f"Re: [{NUMBER}] Printer on fire",
        body="It broke again.\n",
        message_id="<again@customer.example>",
    )
    assert deliver(session_factory, cfg, again, SUPPORT, now=NOW + 3 * DAY).outcome == "replied"
    assert (
        answer(session_factory, cfg, "On our way.\n", 3 * 24 * 60 + 10, "<reply-3@example.com>").outcome
        == "replied"
    )
    out_of_office(
        session_factory, cfg, f"Alice Example <{ALICE}>", NOW + 3 * DAY + DAY / 4, "<ooo-5@customer.example>"
    )
    result = auto_close(session_factory, cfg, (NOW + 5 * DAY).replace(tzinfo=None))
    assert (result.closed, result.outbox_ids) == ([NUMBER], [])
    assert f"No closing notice to {ALICE}, {CAROL}" in notes(session_factory)[-1]


# --- maildctl agent add on an existing agent ----------------------------------------------------------------


def agent_row(factory: Factory, email: str) -> tuple[str, str, list[str]]:
    with factory() as s:
        agent = s.scalars(select(Agent).where(Agent.email == email)).one()
        return agent.name, agent.display_name, sorted(d.name for d in agent.desks)


def test_agent_add_refuses_an_existing_agent_without_update(
    session_factory: Factory, config_file: Path
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", ["sales@example.com"], "SALES-{{nr}}")
    make_agent(session_factory, ANNA, "Anna", ["support"])
    assert agent_row(session_factory, ANNA) == ("Anna", "", ["support"])

    again = run_cli(
        "maildctl",
        "agent",
        "add",
        ANNA.upper(),
        "--name",
        "Anna Other",
        "--desk",
        "sales",
        config=config_file,
    )
    assert again.returncode != 0
    assert again.stdout == ""
    assert again.stderr.count("\n") == 1  # one line, no traceback
    assert f"agent {ANNA} exists already" in again.stderr and "--update" in again.stderr
    assert agent_row(session_factory, ANNA) == ("Anna", "", ["support"])  # not renamed, no desk added

    update_ = run_cli(
        "maildctl",
        "agent",
        "add",
        ANNA,
        "--name",
        "Anna Other",
        "--display-name",
        "Anna from Sales",
        "--desk",
        "sales",
        "--update",
        config=config_file,
    )
    assert update_.returncode == 0, update_.stderr
    assert "'Anna' → 'Anna Other'" in update_.stdout and "sales" in update_.stdout
    assert agent_row(session_factory, ANNA) == ("Anna Other", "Anna from Sales", ["sales", "support"])

    # --update for someone new adds them as usual
    argv = ["agent", "add", BOB, "--name", "Bob", "--desk", "sales", "--update"]
    new = run_cli("maildctl", *argv, config=config_file, subprocess=True)
    assert new.returncode == 0, new.stderr
    assert agent_row(session_factory, BOB) == ("Bob", "", ["sales"])


# --- maildctl ticket list: long subjects and the terminal --------------------------------------------

HEADERS = ["NUMBER", "STATUS", "PRIORITY", "DESK", "CUSTOMER", "MSGS", "SUBJECT"]
LONG = "The printer on the second floor is on fire again and nobody knows where the extinguisher went"


def row(subject: str) -> list[object]:
    return ["SUP-26-03-1", "open", "normal", "support", ALICE, 3, subject]


def layout(rows: list[list[object]]) -> list[str]:
    """The lines print_table writes for these rows (its layout: columns two spaces apart, right-trimmed)."""
    cells = [HEADERS, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADERS))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def test_fit_last_column_cuts_long_subjects_to_the_width() -> None:
    rows = [
        row(LONG),
        row("Short one"),
        row("Ein Drucker brennt: 打印机着火了，请快来帮忙处理一下这个问题吧"),
    ]
    fitted = fit_last_column(HEADERS, rows, 60)
    assert [r[:-1] for r in fitted] == [[str(c) for c in r[:-1]] for r in rows]  # only the subject changes
    assert fitted[1][-1] == "Short one"
    assert fitted[0][-1].endswith("…") and LONG.startswith(fitted[0][-1][:-1])
    assert fitted[2][-1].endswith("…")
    lines = layout(fitted)
    # the columns before SUBJECT take more than 60 - 10: the subject keeps its minimum of 10 columns
    assert len(lines[1]) - len("Short one") > 60 - MIN_LAST_COLUMN
    assert [display_width(f[-1]) for f in fitted] == [MIN_LAST_COLUMN, len("Short one"), MIN_LAST_COLUMN]

    wide = fit_last_column(HEADERS, rows, 120)
    lines = layout(wide)
    assert all(display_width(line) <= 120 for line in lines)
    assert display_width(lines[1]) == 120 or lines[1].endswith("…")
    assert display_width(lines[3]) in (119, 120)  # a wide character that does not fit is left out whole
    assert fit_last_column(HEADERS, rows, 500) == [[str(c) for c in r] for r in rows]  # room: untouched


def test_shorten() -> None:
    assert shorten("abc", 3) == "abc"
    assert shorten("abcd", 3) == "ab…"
    assert shorten("a  b\tc\nd", 20) == "a b c d"  # a tab or line break would break the table's line
    assert shorten("打印机着火了", 6) == "打印…"  # two columns each
    assert display_width("é") == 1 and display_width("e\u0301") == 1


def test_ticket_list_fits_a_terminal_and_prints_whole_subjects_into_a_pipe(
    session_factory: Factory, cfg: Config, config_file: Path
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    assert deliver(session_factory, cfg, mail(subject=LONG), SUPPORT).outcome == "created"

    piped = run_cli("maildctl", "ticket", "list", config=config_file)
    assert piped.returncode == 0, piped.stderr
    assert LONG in piped.stdout  # a pipe or a file gets every character

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen(
        [str(BIN / "maildctl"), "--config", str(config_file), "ticket", "list"],
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    lines = out.decode().replace("\r\n", "\n").rstrip("\n").split("\n")
    assert len(lines) == 2
    assert all(display_width(line) <= 80 for line in lines), lines
    assert lines[1].endswith("…") and LONG not in lines[1]
    assert lines[1].split("  ")[-1].rstrip("…").strip() in LONG
