"""`maildctl health`: whether `maild serve` runs and how its queues stand, one exit code for monitoring
(0 all well, 1 something needs an admin) and one line per problem saying what to do. Also issue 13 point 5:
maildctl piped into a reader that stops early exits quietly, and APScheduler's per-run INFO lines stay out
of `maild serve`'s log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import maild.admin_cli.health
from maild.admin_cli.common import App
from maild.admin_cli.main import main
from maild.config import Config
from maild.ingress.control import ask_status, socket_path
from maild.storage.db import transaction
from maild.storage.models import Desk, JobRun, OutboxMessage, SpoolEntry, utcnow
from tests.cli import ctl
from tests.conftest import BIN
from tests.daemon import (
    Factory,
    Serve,
    free_port,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, make_desk

# the default config's scheduled jobs
JOBS = ("outbox", "auto_close", "escalations", "flood_digest", "quarantine_digest", "spool_recovery")


def serve_config(tmp_path: Path, data_dir: Path, database_url: str, extra: str = "") -> tuple[Path, int]:
    port = free_port()
    config = write_config(
        tmp_path / "serve.toml", data_dir, database_url, listen={"smtp": f"127.0.0.1:{port}"}, extra=extra
    )
    return config, port


def health(config: Path, *args: str) -> tuple[int, Any]:
    """`maildctl health --json`: its exit code and its JSON."""
    proc = ctl(config, "health", "--json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def codes(report: dict[str, Any]) -> list[str]:
    return [problem["code"] for problem in report["problems"]]


def job_ran(factory: Factory, *names: str) -> bool:
    with factory() as session:
        done = {row.name: row for row in session.scalars(select(JobRun))}
    return all(name in done and done[name].ok for name in names)


def start_daemon(start: Any, tmp_path: Path, data_dir: Path, database_url: str, factory: Factory) -> Path:
    """A running `maild serve` whose start-up runs are recorded; its config file."""
    config, _ = serve_config(tmp_path, data_dir, database_url)
    start(config)
    # outbox, auto_close and escalations run at start, spool_recovery with the start's sweep
    wait_until(lambda: job_ran(factory, *JOBS), what="every job's first run in job_runs")
    return config


def outbox_row(factory: Factory, **fields: Any) -> int:
    with transaction(factory) as session:
        desk_id = session.scalars(select(Desk.id)).first()
        row = OutboxMessage(
            **{
                "desk_id": desk_id,
                "template": "ticket_created",
                "message_id": f"<{fields.pop('tag')}@example.com>",
                "mail_from": SUPPORT,
                "rcpt_to": ["alice@customer.example"],
                "subject": "[SUP-1] Printer on fire",
                "raw": b"Subject: [SUP-1] Printer on fire\r\n\r\nHello\r\n",
                **fields,
            }
        )
        session.add(row)
        session.flush()
        return row.id


def spool_row(factory: Factory, n: int, **fields: Any) -> None:
    with transaction(factory) as session:
        session.add(
            SpoolEntry(
                sha256=f"{n:064x}",
                recipient=SUPPORT,
                ingress="smtp",
                size=100,
                **{"state": "done", "reason": "", **fields},
            )
        )


# --- the daemon ----------------------------------------------------------------------


def test_without_a_daemon_health_exits_1_and_says_to_start_it(config_file: Path, cfg: Config) -> None:
    proc = ctl(config_file, "health", subprocess=True)

    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "maild needs an admin: 1 problem"
    assert lines[1] == (
        f"- maild serve is not running (no answer on {socket_path(cfg.data_dir)}): "
        "start it ('systemctl start maild')"
    )
    assert "daemon     not reachable" in lines

    code, report = health(config_file)
    assert code == 1
    assert report["ok"] is False and report["daemon"] is None
    assert codes(report) == ["daemon_unreachable"]
    # a stopped daemon is one problem, not one more per job that does not run
    assert [job["name"] for job in report["jobs"]] == list(JOBS)
    assert not any(job["stale"] for job in report["jobs"])


def test_a_running_daemon_reports_its_listeners_and_jobs_and_all_is_well(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    config, port = serve_config(tmp_path, data_dir, database_url)
    start(config)
    wait_until(lambda: job_ran(session_factory, "outbox"), what="the outbox job's run in job_runs")
    wait_until(lambda: job_ran(session_factory, *JOBS), what="every job's first run")

    code, report = health(config)

    assert code == 0, report["problems"]
    assert report["ok"] is True and report["problems"] == []
    daemon = report["daemon"]
    assert daemon["status"] == "running"
    listeners = {(item["protocol"], item["address"]) for item in daemon["listeners"]}
    assert ("smtp", f"127.0.0.1:{port}") in listeners
    assert ("control", f"unix:{data_dir / 'maild.sock'}") in listeners
    outbox = {job["name"]: job for job in report["jobs"]}["outbox"]
    assert outbox["ok"] is True and outbox["last_ok_at"] is not None and outbox["instance"]
    assert report["spool"] == {
        "waiting": 0,
        "quarantined": 0,
        "held": 0,
        "oldest_waiting_at": None,
        "oldest_waiting_seconds": None,
    }
    assert report["outbox"]["queued"] == report["outbox"]["failing"] == report["outbox"]["failed"] == 0
    assert report["disk"]["low"] is False and report["disk"]["free_bytes"] > 0
    assert report["templates"] == []

    text = ctl(config, "health")
    assert text.returncode == 0, text.stdout
    assert text.stdout.splitlines()[0] == "maild is healthy"
    assert f"smtp 127.0.0.1:{port}" in text.stdout


# --- what needs an admin ----------------------------------------------------------------------


def test_quarantined_and_held_mail_needs_an_admin(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    config = start_daemon(start, tmp_path, data_dir, database_url, session_factory)
    for n in range(3):
        spool_row(session_factory, n, outcome="quarantined", reason="spam: X-Spam-Flag: YES")

    proc = ctl(config, "health")

    assert proc.returncode == 1, proc.stdout
    assert proc.stdout.splitlines()[:2] == [
        "maild needs an admin: 1 problem",
        "- 3 mails quarantined: see 'maildctl spool list --quarantined', then 'maildctl spool release ID' "
        "(good mail) or 'maildctl spool delete ID'",
    ]
    # the line's command is real and shows them
    listed = json.loads(ctl(config, "spool", "list", "--quarantined", "--json").stdout)
    assert len(listed) == 3

    spool_row(session_factory, 9, outcome="held", reason="not accepted as an agent reply: …")
    code, report = health(config)
    assert code == 1
    assert codes(report) == ["spool_quarantined", "spool_held"]
    assert (report["spool"]["quarantined"], report["spool"]["held"]) == (3, 1)
    assert "'maildctl spool list --outcome held'" in report["problems"][1]["message"]
    [held] = json.loads(ctl(config, "spool", "list", "--outcome", "held", "--json").stdout)

    # What the lines say to do clears them (in-process: one maildctl start-up instead of four).
    for spool_id in [held["id"], *(row["id"] for row in listed)]:
        assert main(["--config", str(config), "spool", "delete", str(spool_id)]) == 0
    code, report = health(config)
    assert code == 0, report["problems"]


def test_failing_and_failed_outgoing_mail_needs_an_admin(
    tmp_path: Path, data_dir: Path, database_url: str, session_factory: Factory, start: Any
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    config = start_daemon(start, tmp_path, data_dir, database_url, session_factory)
    # A temporary failure, retried in an hour (the running daemon leaves it alone until then).
    later = utcnow() + dt.timedelta(hours=1)
    failing = outbox_row(
        session_factory,
        tag="failing",
        attempts=2,
        next_attempt_at=later,
        last_error="alice@customer.example: 451 4.4.1 smarthost unreachable",
    )

    code, report = health(config)

    assert code == 1
    assert codes(report) == ["outbox_failing"]
    assert report["outbox"]["queued"] == report["outbox"]["failing"] == 1
    assert report["outbox"]["due"] == 0
    message = report["problems"][0]["message"]
    assert message.startswith("1 outgoing mail failing to send and retried since ")
    assert message.endswith(
        "(last error: alice@customer.example: 451 4.4.1 smarthost unreachable): "
        "see 'maildctl outbox list --status queued'"
    )
    listed = json.loads(ctl(config, "outbox", "list", "--status", "queued", "--json").stdout)
    assert [row["id"] for row in listed] == [failing]

    outbox_row(
        session_factory,
        tag="failed",
        status="failed",
        attempts=1,
        rcpt_to=[],
        failed_to=["nobody@customer.example"],
        last_error="nobody@customer.example: 550 5.1.1 no such user",
    )
    proc = ctl(config, "health")
    assert proc.returncode == 1
    assert (
        "- 1 outgoing mail failed for good (last error: nobody@customer.example: 550 5.1.1 no such user): "
        "see 'maildctl outbox list --status failed', then 'maildctl outbox retry --failed' once the cause "
        "is fixed"
    ) in proc.stdout.splitlines()


def test_a_failed_job_run_needs_an_admin(config_file: Path, session_factory: Factory) -> None:
    now = utcnow()
    with transaction(session_factory) as session:
        session.add(
            JobRun(
                name="auto_close",
                instance="host:42",
                started_at=now,
                finished_at=now,
                ok=False,
                error="OperationalError: database is locked",
                last_ok_at=now - dt.timedelta(hours=2),
            )
        )

    code, report = health(config_file)

    assert code == 1
    assert codes(report) == ["daemon_unreachable", "job_failed"]
    assert "scheduled job auto_close failed at " in report["problems"][1]["message"]
    assert "OperationalError: database is locked" in report["problems"][1]["message"]
    job = {job["name"]: job for job in report["jobs"]}["auto_close"]
    assert job["ok"] is False and job["error"] == "OperationalError: database is locked"


# In-process (main()) with the daemon's answer, the disk and the clock of the spool faked: states a real
# daemon cannot be put in quickly (up for hours, a job silent for as long).
FakeUsage = namedtuple("FakeUsage", "total used free")


def run_main(config_file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["--config", str(config_file), "health", "--json"])
    return code, json.loads(capsys.readouterr().out)


def fake_daemon(monkeypatch: pytest.MonkeyPatch, uptime_seconds: float) -> None:
    status = {"status": "running", "pid": 4242, "version": "0", "uptime_seconds": uptime_seconds}
    monkeypatch.setattr(maild.admin_cli.health, "ask_status", lambda path: {**status, "listeners": []})


def test_a_job_that_stopped_succeeding_while_the_daemon_runs_needs_an_admin(
    config_file: Path, session_factory: Factory, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    now = utcnow()
    with transaction(session_factory) as session:
        for name in JOBS:
            # outbox (every 30 s) last succeeded 10 minutes ago; the others a moment ago
            last = now - dt.timedelta(minutes=10) if name == "outbox" else now
            session.add(JobRun(name=name, started_at=last, finished_at=last, ok=True, last_ok_at=last))
    fake_daemon(monkeypatch, uptime_seconds=3600)

    code, report = run_main(config_file, capsys)

    assert code == 1
    assert codes(report) == ["job_stale"]
    assert report["problems"][0]["message"].startswith(
        "scheduled job outbox (every 30 s) has not succeeded since"
    )
    assert [job["name"] for job in report["jobs"] if job["stale"]] == ["outbox"]

    # Just started: not up for three intervals yet, so not stale.
    fake_daemon(monkeypatch, uptime_seconds=30)
    code, report = run_main(config_file, capsys)
    assert code == 0, report["problems"]


def test_stuck_mail_low_disk_and_a_broken_template_need_an_admin(
    config_file: Path, cfg: Config, session_factory: Factory, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    for n in range(2):
        spool_row(session_factory, n, state="received", received_at=utcnow() - dt.timedelta(hours=n + 1))
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: FakeUsage(100 * 1024**3, 99 * 1024**3, 512 * 1024**2)
    )
    broken = cfg.template_dir / "support"
    broken.mkdir(parents=True)
    (broken / "ticket_created.txt.j2").write_text("Hello {{ customer_name }\n")
    fake_daemon(monkeypatch, uptime_seconds=10)

    code, report = run_main(config_file, capsys)

    assert code == 1
    assert codes(report) == ["spool_stuck", "disk_low", "template_invalid"]
    assert report["spool"]["waiting"] == 2
    assert 7190 < report["spool"]["oldest_waiting_seconds"] < 7300
    assert report["problems"][0]["message"] == (
        "2 received mails not processed yet, the oldest for 2.0 h: see maild serve's log "
        "('journalctl -u maild')"
    )
    assert report["disk"]["low"] is True and report["disk"]["free_bytes"] == 512 * 1024**2
    assert report["problems"][1]["message"].startswith("only 512 MiB (0.5%) free for the data directory")
    [template] = report["templates"]
    assert (template["desk"], template["file"]) == ("support", "ticket_created.txt.j2")
    assert f"fix {broken / 'ticket_created.txt.j2'}" in report["problems"][2]["message"]


def test_a_database_that_cannot_be_reached_is_one_problem_and_the_rest_is_still_checked(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_daemon(monkeypatch, uptime_seconds=10)
    closed = f"postgresql+psycopg://maild@127.0.0.1:{free_port()}/maild"  # nobody listens there
    app = App(dataclasses.replace(cfg, database_url=closed))
    try:
        report = maild.admin_cli.health.collect(app)
    finally:
        app.close()

    assert codes(report) == ["database_unavailable"]
    assert report["problems"][0]["message"].startswith("database unavailable: ")
    assert report["spool"] is report["outbox"] is report["jobs"] is None
    assert report["daemon"]["status"] == "running" and report["disk"]["low"] is False


# --- point 5: pipes and logs ----------------------------------------------------------------------


def quiet_exit(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert stderr == ""  # no BrokenPipeError, no "Exception ignored", no traceback


def test_a_reader_that_closes_early_gets_no_traceback(config_file: Path, session_factory: Factory) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    # The reader is gone before maildctl writes (its import alone takes longer). Block-buffered as in
    # production (not PYTHONUNBUFFERED): the short table is written only by the flush at the end.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [str(BIN / "maildctl"), "--config", str(config_file), "desk", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    quiet_exit(proc)


def test_maildctl_piped_into_head_exits_quietly(config_file: Path, session_factory: Factory) -> None:
    # Far more than a pipe holds: maildctl is still printing (inside the command) when head has gone.
    with transaction(session_factory) as session:
        session.add_all(
            SpoolEntry(sha256=f"{n:064x}", recipient=SUPPORT, ingress="smtp", size=100, state="done")
            for n in range(3000)
        )
    script = 'set -o pipefail; "$0" --config "$1" spool list --json | head -1'
    shell = subprocess.run(
        ["bash", "-c", script, str(BIN / "maildctl"), str(config_file)], capture_output=True, timeout=120
    )
    assert shell.stdout == b"[\n"
    assert shell.returncode == 141, shell.stderr  # pipefail: maildctl's own exit, head's is 0
    assert shell.stderr == b""


def test_maild_serve_logs_no_apscheduler_info_lines(
    tmp_path: Path, data_dir: Path, database_url: str, cfg: Config, start: Any
) -> None:
    config, _ = serve_config(tmp_path, data_dir, database_url, "[scheduler]\noutbox_seconds = 0.2")
    serve: Serve = start(config)
    path = socket_path(data_dir)

    def outbox_runs() -> int:
        status = ask_status(path) or {}
        jobs = {job["name"]: job for job in status.get("scheduled_jobs", [])}
        return int(jobs.get("outbox", {}).get("runs", 0))

    wait_until(lambda: outbox_runs() >= 5, what="five runs of the outbox job")
    assert serve.stop() == 0

    assert serve.not_json == []
    from_apscheduler = [e for e in serve.events if str(e.get("logger", "")).startswith("apscheduler")]
    assert all(e.get("level") not in ("debug", "info") for e in from_apscheduler), from_apscheduler
    for phrase in ("Running job", "Added job", "Scheduler started", "executed successfully"):
        assert not [e for e in serve.events if phrase in json.dumps(e)], phrase
    # the daemon's own lines are still there
    assert serve.find("ready") and serve.find("stopped")
