"""The spam stage honours an upstream filter's yes-verdict (SpamAssassin's X-Spam-Flag and X-Spam-Status,
Rspamd's X-Spam): quarantined with reason `spam: <the header>`, no ticket, no reply. `maildctl spool release
ID` lets a quarantined mail through the pipeline (a ticket appears, its auto-reply goes out) and refuses a
row that is not quarantined."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.admin_cli.main import main as maildctl
from maild.config import Config
from maild.pipeline import STAGES, runner
from maild.pipeline.context import Context
from maild.pipeline.spam import verdict
from maild.storage.models import AuditLog
from tests.pipeline.helpers import (
    SUP_PATTERN,
    SUPPORT,
    crlf,
    deliver,
    mail,
    make_desk,
    outbox,
    spool,
    tickets,
)

Factory = sessionmaker[Session]

SA_STATUS = (
    "Yes, score=7.3 required=5.0 tests=BAYES_99,HTML_MESSAGE,\n\tRCVD_IN_SBL,URIBL_BLACK autolearn=no\n\t"
    "autolearn_force=no version=3.4.6"
)


@pytest.fixture(autouse=True)
def _support(session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)


def cli(config_file: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = maildctl(["--config", str(config_file), *args])
    out, err = capsys.readouterr()
    return code, out, err


def filtered(headers: Sequence[tuple[str, str]], message_id: str = "<first@customer.example>") -> bytes:
    """A customer's mail as the MTA hands it over after its filter added its headers on top."""
    return mail(
        message_id=message_id, extra=[("Received", "from mx.example.com by mx.example.com"), *headers]
    )


# --- the verdicts ---------------------------------------------------------------------------------------

SPAM = {
    "spamassassin-flag": [("X-Spam-Flag", "YES")],
    "spamassassin-flag-lower": [("X-Spam-Flag", "yes")],
    "spamassassin-status": [("X-Spam-Status", SA_STATUS)],
    "spamassassin-status-upper": [("X-Spam-Status", "YES, score=12.0 required=5.0")],
    "spamassassin-both": [("X-Spam-Flag", "YES"), ("X-Spam-Status", SA_STATUS)],
    "rspamd": [("X-Spam", "Yes")],
    "rspamd-lower": [("X-Spam", "yes")],
    # A filter upstream of ours said no, the last one yes: any yes holds it.
    "no-then-yes": [("X-Spam-Status", "Yes, score=9.9"), ("X-Spam-Status", "No, score=0.1")],
}


@pytest.mark.parametrize("headers", SPAM.values(), ids=SPAM.keys())
def test_a_yes_verdict_is_quarantined_without_ticket_or_reply(
    session_factory: Factory, cfg: Config, headers: list[tuple[str, str]]
) -> None:
    result = deliver(session_factory, cfg, filtered(headers), SUPPORT)
    assert (result.outcome, result.ticket_number, result.outbox_ids) == ("quarantined", None, ())
    name, value = next((n, v) for n, v in headers if v.lower().startswith("yes"))
    assert result.reason == f"spam: {name}: {' '.join(value.split())}"  # unfolded
    with session_factory() as session:
        assert tickets(session) == [] and outbox(session) == []
        [row] = spool(session)
        assert (row.state, row.outcome, row.released) == ("done", "quarantined", False)
        assert (row.trace[-1]["stage"], row.trace[-1]["stop"]) == ("spam", "quarantined")


def test_a_long_status_is_cut_in_the_reason(session_factory: Factory, cfg: Config) -> None:
    tests = ",".join(f"RULE_{n}" for n in range(100))
    result = deliver(session_factory, cfg, filtered([("X-Spam-Status", f"Yes, score=30 tests={tests}")]))
    assert result.outcome == "quarantined"
    assert result.reason.startswith("spam: X-Spam-Status: Yes, score=30 tests=RULE_0,")
    assert len(result.reason) == len("spam: ") + 200 and result.reason.endswith("…")


HAM = {
    "spamassassin-status-no": [("X-Spam-Status", "No, score=-0.1 required=5.0 tests=DKIM_SIGNED")],
    "spamassassin-flag-no": [("X-Spam-Flag", "NO")],
    "rspamd-no": [("X-Spam", "No")],
    # Rspamd's action alone is no verdict maild reads (its yes comes with X-Spam: Yes).
    "rspamd-action-only": [("X-Spam-Action", "add header")],
    "score-only": [("X-Spam-Score", "9.5"), ("X-Spam-Level", "*********")],
    "yes-later-in-the-value": [("X-Spam-Status", "No, hits=1.2 Yes=0")],
}


@pytest.mark.parametrize("headers", HAM.values(), ids=HAM.keys())
def test_no_verdict_or_a_no_passes(
    session_factory: Factory, cfg: Config, headers: list[tuple[str, str]]
) -> None:
    assert deliver(session_factory, cfg, filtered(headers), SUPPORT).outcome == "created"


def test_a_verdict_quoted_in_the_body_is_not_a_header(session_factory: Factory, cfg: Config) -> None:
    body = "Your filter marked my last mail:\n\nX-Spam-Flag: YES\nX-Spam: Yes\n\nPlease fix it.\n"
    assert deliver(session_factory, cfg, mail(body=body), SUPPORT).outcome == "created"


def test_verdict_reads_lf_only_mail_and_lists_every_verdict_header() -> None:
    raw = b"X-Spam-Status: No, score=1\nX-Spam: Yes\nFrom: a@b.example\n\nbody\nX-Spam-Flag: YES\n"
    assert verdict(raw) == (True, ["X-Spam: Yes", "X-Spam-Status: No, score=1"])
    assert verdict(crlf("From: a@b.example\n\nhi\n")) == (False, [])


# --- maildctl spool release -----------------------------------------------------------------------------


def test_release_runs_a_quarantined_mail_through_the_pipeline(
    session_factory: Factory, cfg: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deliver(session_factory, cfg, filtered([("X-Spam-Flag", "YES")])).outcome == "quarantined"
    with session_factory() as session:
        [row] = spool(session)
    code, out, _ = cli(config_file, capsys, "spool", "list", "--quarantined", "--json")
    assert code == 0 and [(r["id"], r["outcome"]) for r in json.loads(out)] == [(row.id, "quarantined")]

    code, out, err = cli(config_file, capsys, "spool", "release", str(row.id))
    assert (code, err) == (0, "")
    with session_factory() as session:
        [ticket] = tickets(session)
        [reply] = outbox(session)
        [released] = spool(session)
        [audit] = session.scalars(select(AuditLog).where(AuditLog.action == "spool_release"))
    assert out.startswith(f"released {row.id} and processed now: created {ticket.number}; its mail: 1 sent")
    assert (released.state, released.outcome, released.released, released.ticket_id) == (
        "done",
        "created",
        True,
        ticket.id,
    )
    assert [entry["stage"] for entry in released.trace][-1] == "notify"  # the whole pipeline ran
    # The auto-reply was handed to the sender at once, as maild pipe does.
    assert reply.status == "sent"
    assert len(list((cfg.outgoing_maildir / "new").iterdir())) == 1
    assert audit.detail == {
        "spool_id": row.id,
        "before": {"outcome": "quarantined", "reason": "spam: X-Spam-Flag: YES", "attempts": 1},
    }


def test_release_refuses_what_is_not_quarantined(
    session_factory: Factory, cfg: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as session:
        [row] = spool(session)
    for args, message in [
        (
            ("spool", "release", str(row.id)),
            f"maildctl: spool entry {row.id} is not quarantined (created): only quarantined mail is released",
        ),
        (("spool", "release", "999"), "maildctl: no spool entry with id 999: see 'maildctl spool list'"),
    ]:
        code, out, err = cli(config_file, capsys, *args)
        assert (code, out, err) == (1, "", message + "\n")
    with session_factory() as session:
        assert [(r.outcome, r.released) for r in spool(session)] == [("created", False)]
        assert list(session.scalars(select(AuditLog).where(AuditLog.action == "spool_release"))) == []


def test_a_released_mail_released_again_is_refused(
    session_factory: Factory, cfg: Config, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(session_factory, cfg, filtered([("X-Spam", "Yes")]))
    with session_factory() as session:
        [row] = spool(session)
    assert cli(config_file, capsys, "spool", "release", str(row.id))[0] == 0
    code, _, err = cli(config_file, capsys, "spool", "release", str(row.id))
    assert code == 1 and "is not quarantined (created)" in err


def test_spool_list_knows_the_hygiene_outcomes(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for outcome in ("looped", "bounce", "archived", "blocked", "quarantined", "created"):
        code, out, _ = cli(config_file, capsys, "spool", "list", "--outcome", outcome, "--json")
        assert (code, json.loads(out)) == (0, [])
    code, _, err = cli(config_file, capsys, "spool", "list", "--outcome", "spam")
    assert code == 1 and "looped, bounce, archived, blocked" in err


def test_release_replays_a_mail_quarantined_after_failed_attempts(
    session_factory: Factory,
    cfg: Config,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(ctx: Context) -> None:
        raise RuntimeError("a bug in thread")

    monkeypatch.setattr(runner, "STAGES", tuple((n, explode if n == "thread" else s) for n, s in STAGES))
    first = deliver(session_factory, cfg, mail(), SUPPORT)
    with session_factory() as session:
        [row] = spool(session)
    while first.outcome != "quarantined":
        first = runner.process(session_factory, cfg, row.id)
    monkeypatch.setattr(runner, "STAGES", STAGES)  # the bug fixed
    code, out, _ = cli(config_file, capsys, "spool", "release", str(row.id))
    assert code == 0 and out.startswith(f"released {row.id} and processed now: created SUP-")
    with session_factory() as session:
        [released] = spool(session)
    assert (released.outcome, released.attempts) == ("created", 1)  # a fresh count, not a fourth attempt
