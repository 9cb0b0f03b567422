"""maildctl explain: a dry run of the pipeline that says, stage by stage, what it decided and why, and
changes nothing (no row, no counter, no file)."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.utils
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from maild import pipeline
from maild.admin_cli.main import main as maildctl
from maild.config import Config
from maild.mail.tokens import SECRET_FILE, bounce_address, load_secret
from maild.pipeline import runner
from maild.pipeline.context import BounceInfo, Context, Stop
from maild.pipeline.explain import Explanation
from maild.storage.db import transaction
from maild.storage.models import BlockEntry, Desk, SpoolEntry
from tests.conftest import run_cli
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, crlf, deliver, mail, make_desk, outbox
from tests.pipeline.helpers import ticket as ticket_by_number

Factory = sessionmaker[Session]
FIRST, SECOND = "SUP-26-03-1", "SUP-26-03-2"
STAGE_NAMES = [name for name, _ in pipeline.STAGES]
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
ALICE = "alice@customer.example"


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def with_attachment(
    message_id: str = "<att@customer.example>",
    filename: str = "invoice.pdf",
    content_type: str = "application/pdf",
) -> bytes:
    encoded = base64.encodebytes(PDF).decode()
    return crlf(
        "\n".join(
            [
                "From: Alice Example <alice@customer.example>",
                f"To: {SUPPORT}",
                "Cc: Bob <bob@customer.example>",
                "Subject: Invoice attached",
                "Date: Sat, 07 Mar 2026 09:00:00 +0000",
                f"Message-ID: {message_id}",
                "MIME-Version: 1.0",
                'Content-Type: multipart/mixed; boundary="b1"',
                "",
                "--b1",
                "Content-Type: text/plain; charset=utf-8",
                "",
                "Please see the invoice.",
                "",
                "--b1",
                f'Content-Type: {content_type}; name="{filename}"',
                f'Content-Disposition: attachment; filename="{filename}"',
                "Content-Transfer-Encoding: base64",
                "",
                encoded,
                "--b1--",
                "",
            ]
        )
    )


def database_state(factory: Factory) -> dict[str, list[str]]:
    """Every row of every table, in a comparable form: counts alone would miss a bumped counter."""
    with factory() as session:
        tables = inspect(session.get_bind()).get_table_names()
        return {
            table: sorted(repr(tuple(row)) for row in session.execute(text(f'SELECT * FROM "{table}"')))
            for table in tables
        }


def files_state(cfg: Config) -> set[tuple[str, int]]:
    """Every file in the data dir (spool, attachments, outgoing mail) but the reply secret."""
    return {
        (str(path.relative_to(cfg.data_dir)), path.stat().st_size)
        for path in cfg.data_dir.rglob("*")
        if path.is_file() and path.name != SECRET_FILE
    }


def explain(factory: Factory, cfg: Config, raw: bytes, recipient: str = SUPPORT) -> Explanation:
    """A dry run, checked to have changed nothing."""
    db_before, files_before = database_state(factory), files_state(cfg)
    result = runner.explain(factory, cfg, raw, recipient, NOW)
    assert database_state(factory) == db_before
    assert files_state(cfg) == files_before
    return result


def verdicts(result: Explanation) -> dict[str, str]:
    return {stage["stage"]: stage["verdict"] for stage in result.stages}


def test_a_new_mail_would_open_a_ticket_and_send_the_auto_reply(
    session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)  # rows and files exist already: none may change
    result = explain(session_factory, cfg, with_attachment())
    assert (result.outcome, result.desk, result.ticket, result.threaded_by) == (
        "created",
        "support",
        SECOND,
        "new",
    )
    assert [s["stage"] for s in result.stages] == STAGE_NAMES
    assert not any("stop" in s for s in result.stages)
    said = verdicts(result)
    assert said["route"] == f"desk support (envelope recipient {SUPPORT})"
    assert said["identify"] == "sender alice@customer.example is a contact (known)"
    assert said["thread"].startswith("new ticket")
    assert said["apply"].startswith(f"would create {SECOND} for alice@customer.example")
    assert "bob@customer.example" in said["apply"]  # the Cc becomes a sub-customer
    # the auto-reply goes to the sender only until an agent answers (issue 14)
    assert said["notify"] == "would queue ticket_created to alice@customer.example"
    assert result.would_send == [
        {
            "template": "ticket_created",
            "to": ["alice@customer.example"],
            "cc": [],
            "subject": result.would_send[0]["subject"],
        }
    ]
    assert f"[{SECOND}]" in result.would_send[0]["subject"]
    [attachment] = result.attachments
    assert attachment["name"] == "invoice.pdf"
    assert (attachment["size"], attachment["type"]) == (len(PDF), "application/pdf")
    assert attachment["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert "Please see the invoice." in (result.text or "")
    assert "Please see the invoice." in (result.visible_text or "")
    # The number it announced is the one the real run gives.
    assert deliver(session_factory, cfg, with_attachment(), SUPPORT).ticket_number == SECOND


def test_a_refused_attachment_says_why(session_factory: Factory, cfg: Config) -> None:
    result = explain(
        session_factory, cfg, with_attachment(filename="setup.exe", content_type="application/x-msdownload")
    )
    [attachment] = result.attachments
    assert attachment["name"] == "setup.exe" and attachment["refused"]
    assert attachment["sha256"] == hashlib.sha256(PDF).hexdigest()  # the digest, even of a refused file


def test_a_new_sender_is_a_new_contact(session_factory: Factory, cfg: Config) -> None:
    result = explain(session_factory, cfg, mail(sender="carol@other.example"))
    assert verdicts(result)["identify"] == "sender carol@other.example is a contact (new)"
    assert result.ticket == FIRST


def test_a_reply_names_the_ticket_and_the_rule(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    reply = mail(
        subject="Re: Printer on fire",
        message_id="<second@customer.example>",
        extra=[("In-Reply-To", "<first@customer.example>"), ("References", "<first@customer.example>")],
    )
    result = explain(session_factory, cfg, reply)
    assert (result.outcome, result.ticket, result.threaded_by) == ("replied", FIRST, "references")
    said = verdicts(result)
    assert (
        said["thread"]
        == f"threaded by references to {FIRST} via <first@customer.example> (a mail we received)"
    )
    assert said["policy"] == f"joins {FIRST} (status open)"
    assert said["apply"] == f"would add the customer mail to {FIRST}, status becomes open"
    assert said["notify"] == "nothing to send"
    assert result.would_send == []


def test_a_reply_to_the_auto_reply_is_threaded_by_token_or_by_what_we_sent(
    session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as s:
        [sent] = outbox(s)
        signed = email.message_from_bytes(sent.raw)["Reply-To"]
        sent_id = sent.message_id
    signed_address = email.utils.parseaddr(signed)[1]
    reply = mail(message_id="<r@customer.example>", subject="Re: thanks", extra=[("In-Reply-To", sent_id)])
    by_token = explain(session_factory, cfg, reply, recipient=signed_address)
    assert (by_token.ticket, by_token.threaded_by) == (FIRST, "token")
    assert verdicts(by_token)["thread"] == (
        f"threaded by token to {FIRST} via the signed reply address {signed_address}"
    )
    by_reference = explain(session_factory, cfg, reply)
    assert (by_reference.ticket, by_reference.threaded_by) == (FIRST, "references")
    assert (
        verdicts(by_reference)["thread"]
        == f"threaded by references to {FIRST} via {sent_id} (a mail we sent)"
    )


def test_a_reply_to_a_recently_closed_ticket_reopens_it(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    with transaction(session_factory) as s:
        closed = ticket_by_number(s, FIRST)
        closed.status, closed.updated_at = "closed", (NOW - dt.timedelta(days=2)).replace(tzinfo=None)
    reply = mail(message_id="<late@customer.example>", extra=[("In-Reply-To", "<first@customer.example>")])
    result = explain(session_factory, cfg, reply)
    assert verdicts(result)["policy"] == (
        f"{FIRST} is closed but within the desk's 14-day reopen window: the reply reopens it"
    )
    assert (result.outcome, result.ticket) == ("replied", FIRST)


def test_a_reply_to_a_merged_ticket_names_the_survivor(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    deliver(
        session_factory, cfg, mail(subject="Another thing", message_id="<other@customer.example>"), SUPPORT
    )
    with transaction(session_factory) as s:
        ticket_by_number(s, FIRST).merged_into = ticket_by_number(s, SECOND)
    reply = mail(message_id="<r@customer.example>", extra=[("In-Reply-To", "<first@customer.example>")])
    result = explain(session_factory, cfg, reply)
    assert (result.ticket, result.threaded_by) == (SECOND, "references")
    assert verdicts(result)["thread"] == (
        f"threaded by references to {SECOND} via <first@customer.example> (a mail we received)"
        f" ({FIRST} → {SECOND}: merged)"
    )


def test_a_refused_mail_says_which_policy_and_what_would_answer_it(
    session_factory: Factory, cfg: Config
) -> None:
    with transaction(session_factory) as s:
        s.scalars(select(Desk)).one().replies_only = True
    result = explain(session_factory, cfg, mail())
    assert result.outcome == "refused"
    assert result.stages[-1] == {
        "stage": "policy",
        "verdict": "refused: replies_only: support takes replies to existing tickets only",
        "stop": "refused",
    }
    assert [(m["template"], m["to"]) for m in result.would_send] == [
        ("replies_only_refusal", ["alice@customer.example"])
    ]
    assert result.ticket is None


def test_a_stranger_quoting_a_number_gets_a_linked_ticket(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    hijack = mail(
        sender="mallory@evil.example", subject=f"Re: [{FIRST}] Printer", message_id="<m@evil.example>"
    )
    result = explain(session_factory, cfg, hijack)
    assert (result.outcome, result.ticket, result.linked_ticket) == ("created", SECOND, FIRST)
    assert result.threaded_by == "new"
    said = verdicts(result)
    assert said["thread"] == f"threaded by subject to {FIRST} ([{FIRST}] in the subject)"
    assert "mallory@evil.example quoted" in said["policy"]
    assert said["policy"].endswith(f"would open a new ticket linked to {FIRST}")
    assert said["apply"].startswith(f"would create {SECOND} for mallory@evil.example, linked to {FIRST}")


def test_an_unknown_recipient_stops_at_route(session_factory: Factory, cfg: Config) -> None:
    result = explain(session_factory, cfg, mail(), recipient="Nobody@Example.com")
    assert result.outcome == "unknown_recipient"
    assert "nobody@example.com" in result.reason  # normalised, as maild pipe does
    assert result.stages[-1] == {
        "stage": "route",
        "verdict": f"unknown_recipient: {result.reason}",
        "stop": "unknown_recipient",
    }
    assert (result.desk, result.ticket, result.would_send) == (None, None, [])


def test_a_duplicate_names_the_ticket_holding_it(session_factory: Factory, cfg: Config) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    result = explain(session_factory, cfg, mail())
    assert (result.outcome, result.ticket) == ("duplicate", FIRST)
    assert result.stages[-1]["stage"] == "dedupe" and result.stages[-1]["stop"] == "duplicate"


def test_garbage_is_quarantined_with_the_reason(session_factory: Factory, cfg: Config) -> None:
    result = explain(session_factory, cfg, b"\x00\x01\x02 not a mail at all \xff\xfe")
    assert result.outcome == "quarantined"
    assert result.reason
    assert result.stages == [
        {"stage": "parse", "verdict": f"quarantined: {result.reason}", "stop": "quarantined"}
    ]
    assert (result.text, result.attachments, result.would_send) == (None, [], [])


def test_a_stage_the_explainer_does_not_know_gets_a_generic_verdict(
    session_factory: Factory, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def look(ctx: Context) -> None:
        return None

    def refuse(ctx: Context) -> Stop:
        return Stop("greylisted", "first delivery attempt")

    # Names no describer knows (the hygiene stages have their own sentences now).
    stages = (*pipeline.STAGES[:2], ("greet", look), ("greylist", refuse), *pipeline.STAGES[2:])
    monkeypatch.setattr(runner, "STAGES", stages)
    result = explain(session_factory, cfg, mail())
    said = verdicts(result)
    assert said["greet"] == "passed"
    assert said["greylist"] == "greylisted: first delivery attempt"
    assert result.outcome == "greylisted" and result.stages[-1]["stop"] == "greylisted"


def test_a_stage_that_raises_is_an_error_and_changes_nothing(
    session_factory: Factory, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(ctx: Context) -> Stop | None:
        raise RuntimeError("boom in notify")

    stages = tuple((name, explode if name == "notify" else stage) for name, stage in pipeline.STAGES)
    monkeypatch.setattr(runner, "STAGES", stages)
    result = explain(session_factory, cfg, with_attachment())
    assert result.outcome == "error"
    assert result.reason == "RuntimeError: boom in notify"
    assert [s["stage"] for s in result.stages] == STAGE_NAMES
    assert result.stages[-1] == {
        "stage": "notify",
        "verdict": "error: RuntimeError: boom in notify",
        "stop": "error",
    }
    assert result.ticket == FIRST  # what apply had decided before notify failed


def test_cli_exits_1_when_a_stage_raised_and_still_explains(
    session_factory: Factory,
    cfg: Config,
    config_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def explode(ctx: Context) -> Stop | None:
        raise RuntimeError("boom in thread")

    monkeypatch.setattr(
        runner, "STAGES", tuple((n, explode if n == "thread" else s) for n, s in pipeline.STAGES)
    )
    eml = tmp_path / "one.eml"
    eml.write_bytes(mail())
    assert maildctl(["--config", str(config_file), "explain", str(eml)]) == 1
    out, err = capsys.readouterr()
    assert "  thread: error: RuntimeError: boom in thread" in out
    assert "outcome: error (RuntimeError: boom in thread)" in out
    assert err == f"maildctl: a stage failed on {eml} (see its explanation)\n"


# --- the real command --------------------------------------------------------------------------------


def ctl(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("maildctl", *args, config=config_file)


def test_cli_json_one_object_per_file_in_order(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    reply = tmp_path / "reply.eml"
    reply.write_bytes(
        mail(message_id="<r@customer.example>", extra=[("In-Reply-To", "<first@customer.example>")])
    )
    new = tmp_path / "new.eml"
    new.write_bytes(with_attachment())
    db_before, files_before = database_state(session_factory), files_state(cfg)
    proc = ctl(config_file, "explain", str(reply), str(new), "--recipient", SUPPORT, "--json")
    assert proc.returncode == 0, proc.stderr
    assert database_state(session_factory) == db_before
    assert files_state(cfg) == files_before
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    assert [r["file"] for r in results] == [str(reply), str(new)]
    assert all(
        set(r)
        == {
            "file",
            "outcome",
            "reason",
            "stages",
            "desk",
            "ticket",
            "threaded_by",
            "linked_ticket",
            "visible_text",
            "text",
            "attachments",
            "would_send",
            "defects",
            "bounce",
            "automatic",
            "subject",  # issue 17: the parsed headers, for outside checkers
            "from",
            "to",
            "cc",
        }
        for r in results
    )
    assert all(r["bounce"] is None and r["automatic"] is None for r in results)  # two mails by a person
    first, second = results
    assert (first["outcome"], first["ticket"], first["threaded_by"]) == ("replied", FIRST, "references")
    assert second["outcome"] == "created" and second["ticket"].startswith("SUP-")  # numbered at today's date
    assert second["would_send"][0]["template"] == "ticket_created"
    assert second["attachments"][0]["name"] == "invoice.pdf"
    assert [s["stage"] for s in second["stages"]] == STAGE_NAMES


def test_cli_human_output_lists_the_stages(
    session_factory: Factory, config_file: Path, tmp_path: Path
) -> None:
    eml = tmp_path / "new.eml"
    eml.write_bytes(mail())
    # no --recipient: the To header routes it
    proc = run_cli("maildctl", "explain", str(eml), config=config_file, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"== {eml}"
    stage_lines = lines[1 : 1 + len(STAGE_NAMES)]
    assert [line.split(":")[0].strip() for line in stage_lines] == STAGE_NAMES
    by_stage = dict(zip(STAGE_NAMES, stage_lines, strict=True))
    assert by_stage["parse"].startswith("  parse: mail from alice@customer.example, <first@customer.example>")
    assert by_stage["route"] == f"  route: desk support (To {SUPPORT})"
    assert "outcome: created" in lines
    assert "  | the printer on floor 2 is on fire." in lines
    assert any(
        line.startswith("would send: ticket_created to alice@customer.example: [SUP-") for line in lines
    )


def test_cli_missing_file_is_one_line_and_nothing_runs(config_file: Path, tmp_path: Path) -> None:
    present = tmp_path / "present.eml"
    present.write_bytes(mail())
    missing = tmp_path / "missing.eml"
    proc = ctl(config_file, "explain", str(present), str(missing))
    assert proc.returncode == 1
    assert proc.stdout == ""  # checked before the first file ran
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"maildctl: cannot read {missing}: No such file or directory"]


# --- hygiene: loop, bounce, spam, blocked, autoreply ------------------------------------------------------

OUT_OF_OFFICE = crlf(
    "\n".join(
        [
            "From: Bob Builder <bob@customer.example>",
            f"To: {SUPPORT}",
            "Subject: Automatic reply: Printer on fire",
            "Thread-Topic: Printer on fire",
            "Date: Sat, 07 Mar 2026 09:01:00 +0000",
            "Message-ID: <OOO1@AM0PR07MB1234.eurprd07.prod.outlook.com>",
            "In-Reply-To: <first@customer.example>",
            "Auto-Submitted: auto-replied",
            "X-Auto-Response-Suppress: All",
            "X-MS-Exchange-Inbox-Rules-Loop: bob@customer.example",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "I am out of the office until Monday.",
            "",
        ]
    )
)


def test_a_mail_by_a_person_passes_each_hygiene_stage_with_a_sentence(
    session_factory: Factory, cfg: Config
) -> None:
    result = explain(session_factory, cfg, mail())
    said = verdicts(result)
    assert said["loop"].startswith("not our own mail coming back")
    assert said["bounce"] == "not a delivery report"
    assert said["spam"] == "no spam verdict from an upstream filter (X-Spam-Flag, X-Spam-Status, X-Spam)"
    assert said["blocked"] == "sender alice@customer.example not on the blocklist"
    assert said["autoreply"] == "written by a person: no sign of automatic mail"
    assert (result.bounce, result.automatic) == (None, None)


def test_a_blocked_sender_stops_at_blocked(session_factory: Factory, cfg: Config) -> None:
    with transaction(session_factory) as session:
        session.add(BlockEntry(pattern="@customer.example", subdomains=False, reason="fraud", added_by="t"))
    result = explain(session_factory, cfg, mail())
    assert (result.outcome, result.desk, result.ticket) == ("blocked", None, None)
    assert result.stages[-1] == {
        "stage": "blocked",
        "verdict": "blocked: sender alice@customer.example matches blocklist entry @customer.example: fraud",
        "stop": "blocked",
    }
    assert result.would_send == []


def test_spam_stops_at_spam_and_a_no_verdict_is_named(session_factory: Factory, cfg: Config) -> None:
    spam = explain(session_factory, cfg, mail(extra=[("X-Spam-Flag", "YES")]))
    assert spam.outcome == "quarantined"
    assert spam.stages[-1] == {
        "stage": "spam",
        "verdict": "quarantined: spam: X-Spam-Flag: YES",
        "stop": "quarantined",
    }
    ham = explain(session_factory, cfg, mail(extra=[("X-Spam-Status", "No, score=-1.0 required=5.0")]))
    assert ham.outcome == "created"
    assert (
        verdicts(ham)["spam"] == "upstream filter says not spam: X-Spam-Status: No, score=-1.0 required=5.0"
    )


def test_an_out_of_office_reply_is_automatic_in_the_sentence_and_the_json(
    session_factory: Factory, cfg: Config
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)  # the ticket the out-of-office answers
    result = explain(session_factory, cfg, OUT_OF_OFFICE)
    assert result.automatic == {"class": "out-of-office", "reason": "Auto-Submitted: auto-replied"}
    assert verdicts(result)["autoreply"] == (
        "automatic mail, out-of-office (Auto-Submitted: auto-replied): may join a ticket, "
        "never answered automatically"
    )
    assert result.would_send == []  # never answered
    assert result.bounce is None


def test_the_json_of_a_context_filled_by_hand(session_factory: Factory, cfg: Config) -> None:
    """The builder alone: what the bounce and autoreply stages leave in the context, as JSON."""
    from maild.pipeline import explain as explaining

    with session_factory() as session:
        ctx = Context(session=session, cfg=cfg, spool=SpoolEntry(mail_from=""), raw=b"", now=NOW)
        ctx.bounce = BounceInfo(
            permanent=True,
            recipients=("nobody@customer.example",),
            status="5.1.1",
            diagnostic="550 5.1.1 <nobody@customer.example>: user unknown",
            outbox_id=7,
            matched_by="verp",
        )
        ctx.automatic, ctx.automatic_reason = "auto-generated", "envelope sender <>"
        data = explaining.summarize(ctx, []).as_json()
        assert data["bounce"] == {
            "permanent": True,
            "recipients": ["nobody@customer.example"],
            "status": "5.1.1",
            "diagnostic": "550 5.1.1 <nobody@customer.example>: user unknown",
            "matched_by": "verp",
        }
        assert data["automatic"] == {"class": "auto-generated", "reason": "envelope sender <>"}
        assert explaining.describe("bounce", ctx, None)["verdict"] == (
            "delivery report, permanent failure 5.1.1 for nobody@customer.example, matched by verp: "
            "550 5.1.1 <nobody@customer.example>: user unknown"
        )
        ctx.bounce = BounceInfo(permanent=False, recipients=(), matched_by="")
        assert explaining.summarize(ctx, []).as_json()["bounce"] == {
            "permanent": False,
            "recipients": [],
            "status": "",
            "diagnostic": "",
            "matched_by": "",
        }
        # A stage that raised: its explanation keeps both fields too.
        failed = explaining.failed(ctx, [], "apply", RuntimeError("x")).as_json()
        assert failed["bounce"]["permanent"] is False and failed["automatic"]["class"] == "auto-generated"


def test_cli_json_and_text_of_an_out_of_office_reply(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    # Bob is on the ticket (Cc): a stranger's out-of-office by In-Reply-To would open a ticket of its own
    deliver(session_factory, cfg, mail(extra=[("Cc", "Bob Builder <bob@customer.example>")]), SUPPORT)
    eml = tmp_path / "ooo.eml"
    eml.write_bytes(OUT_OF_OFFICE)
    proc = ctl(config_file, "explain", str(eml), "--recipient", SUPPORT, "--json")
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["automatic"] == {"class": "out-of-office", "reason": "Auto-Submitted: auto-replied"}
    assert result["bounce"] is None
    assert (result["outcome"], result["ticket"], result["would_send"]) == ("replied", FIRST, [])
    text = ctl(config_file, "explain", str(eml), "--recipient", SUPPORT)
    assert "automatic: out-of-office (Auto-Submitted: auto-replied)" in text.stdout.splitlines()


def test_cli_json_of_a_real_delivery_report(
    session_factory: Factory, cfg: Config, config_file: Path, tmp_path: Path
) -> None:
    from tests.test_bounces import postfix_dsn

    assert deliver(session_factory, cfg, mail(), SUPPORT).outcome == "created"
    with session_factory() as session:
        [auto_reply] = outbox(session)
    address = bounce_address(load_secret(cfg.data_dir), auto_reply.mail_from, auto_reply.id, ALICE)
    matched = tmp_path / "matched.eml"
    matched.write_bytes(postfix_dsn(ALICE, to=address))
    # A Postfix report about a mail we never sent: a bounce, matched to nothing.
    unmatched = tmp_path / "unmatched.eml"
    unmatched.write_bytes(
        (Path(__file__).parent / "corpus/bounces/101-postfix-user-unknown.eml").read_bytes()
    )
    db_before = database_state(session_factory)
    proc = ctl(config_file, "explain", str(matched), "--recipient", address, "--json")
    assert proc.returncode == 0, proc.stderr
    other = ctl(config_file, "explain", str(unmatched), "--recipient", SUPPORT, "--json")
    assert other.returncode == 0, other.stderr
    assert database_state(session_factory) == db_before  # the contact is not marked bouncing by a dry run
    [result] = json.loads(proc.stdout)
    assert result["outcome"] == "bounce"
    assert result["bounce"] == {
        "permanent": True,
        "recipients": [ALICE],
        "status": "5.1.1",
        "diagnostic": f"550 5.1.1 <{ALICE}>: Recipient address rejected: User unknown",
        "matched_by": "verp",
    }
    assert result["automatic"] is None  # the bounce stage stops before autoreply classifies it
    assert result["stages"][-1]["stage"] == "bounce" and result["stages"][-1]["stop"] == "bounce"
    [report] = json.loads(other.stdout)
    assert report["outcome"] == "archived" and report["reason"].startswith("bounce-unmatched")
    assert report["bounce"]["permanent"] is True and report["bounce"]["status"] == "5.1.1"
    assert report["bounce"]["recipients"] == ["carol@customer.example"]
    assert report["bounce"]["matched_by"] == ""
    text = ctl(config_file, "explain", str(matched), "--recipient", address).stdout.splitlines()
    assert f"bounce: permanent 5.1.1 for {ALICE}, matched by verp" in text
    assert f"  diagnostic: 550 5.1.1 <{ALICE}>: Recipient address rejected: User unknown" in text
