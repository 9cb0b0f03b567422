"""maildctl health [--json]: is maild serve running, how its queues stand, and what needs an admin.

One look for a person and one exit code for monitoring: 0 when all is well, 1 when something needs an
admin. Every problem is one line that says what to do. What it reads:

  daemon     the running `maild serve`'s answer to a status request on its control socket
  (maild.ingress.control):
             pid, version, listeners, its scheduled jobs. No answer: not running (a problem).
  spool      rows still 'received' (waiting to be processed; the oldest one's age), and rows waiting for a
             person (maild.tickets.retention.AWAITING_REVIEW: quarantined, held). Waiting longer than
             STUCK_SECONDS
             is a problem; so is any quarantined or held mail, until an admin releases or deletes it.
  outbox     queued (due now, failing: a temporary failure being retried) and failed (given up) mail;
             failing and failed mail are problems.
  jobs       the last run of each scheduled job (`job_runs`, written by whichever daemon ran it): a failed
             last run is a problem, and so is no success within STALE_INTERVALS intervals while the
             daemon has been up that long.
  disk       free space where the data directory is: below MIN_FREE_BYTES or MIN_FREE_PERCENT is a problem.
  templates  what maild.outbound.templating.check_templates finds wrong with the desks' overrides.
  webhooks, presence, rules: maild.admin_cli.health_automation.

A few queries in one short transaction, no scan of a whole table (spool and outbox by their indexed state
columns); the JSON's field names are stable (monitoring parses them)."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from maild.admin_cli import health_automation
from maild.admin_cli.common import App, iso, print_json
from maild.config import Config
from maild.ingress.control import MAX_SOCKET_PATH, SOCKET_NAME, ask_status, socket_path
from maild.storage.models import JobRun, OutboxMessage, SpoolEntry, utcnow
from maild.tickets.retention import AWAITING_REVIEW

STALE_INTERVALS = 3  # a job that has not succeeded for this many of its intervals has stopped working
STUCK_SECONDS = 15 * 60  # unprocessed mail older than this (or 3 recovery intervals) is stuck
MIN_FREE_BYTES = 1024**3
MIN_FREE_PERCENT = 5.0
EX_OK, EX_PROBLEM = 0, 1
LOG_HINT = "see maild serve's log ('journalctl -u maild')"


@dataclass(frozen=True)
class Problem:
    code: str  # stable, for monitoring: daemon_unreachable, spool_quarantined, outbox_failing, …
    message: str  # one line that says what to do


def register(commands: Any) -> None:
    health = commands.add_parser(
        "health",
        help="is maild serve running, how the spool, outbox, scheduled jobs and webhooks stand, disk, "
        "templates, rules, presence "
        "(exit 1 when something needs an admin)",
        description="Exit 0 when all is well, 1 when something needs an admin; each problem is one line "
        "saying what to do.",
    )
    health.add_argument("--json", action="store_true")
    health.set_defaults(handler=run_health)


def run_health(app: App, args: argparse.Namespace) -> int:
    report = collect(app)
    if args.json:
        print_json(report)
    else:
        print_text(report)
    return EX_OK if report["ok"] else EX_PROBLEM


def collect(app: App) -> dict[str, Any]:
    """Every check's findings and the problems among them, as the JSON shows them."""
    cfg = app.cfg
    now = utcnow()
    problems: list[Problem] = []
    daemon = _daemon(cfg, problems)
    spool: dict[str, Any] | None = None
    outbox: dict[str, Any] | None = None
    jobs: list[dict[str, Any]] | None = None
    automation: dict[str, Any] = {"webhooks": None, "presence": None, "rules": None}
    found: list[Problem] = []  # kept only when every query went through: no half a report
    try:
        with app.session() as session:  # one transaction: the counts agree with each other
            spool = _spool(session, cfg, now, found)
            outbox = _outbox(session, now, found)
            jobs = _jobs(session, cfg, now, daemon, found)
            automation = _automation(session, cfg, now, found)
        problems += found
    except (OperationalError, ProgrammingError) as exc:
        # The daemon, the disk and the templates can still be reported; the database is one problem.
        problems.append(_database_problem(exc))
        spool = outbox = jobs = None
        automation = dict.fromkeys(automation)
    disk = _disk(cfg.data_dir, problems)
    templates = _templates(cfg.template_dir, problems)
    return {
        "ok": not problems,
        "checked_at": iso(now),
        "problems": [asdict(problem) for problem in problems],
        "daemon": daemon,
        "spool": spool,
        "outbox": outbox,
        "jobs": jobs,
        "disk": disk,
        "templates": templates,
        **automation,
    }


# --- the checks ----------------------------------------------------------------------------------------


def _daemon(cfg: Config, problems: list[Problem]) -> dict[str, Any] | None:
    path = socket_path(cfg.data_dir)
    if path is None:  # the daemon cannot bind it either (it logs control_socket_off)
        problems.append(
            Problem(
                "daemon_unknown",
                f"cannot ask maild serve: {cfg.data_dir / SOCKET_NAME} is longer than a unix socket path may "
                f"be ({MAX_SOCKET_PATH} bytes): choose a shorter data_dir",
            )
        )
        return None
    status = ask_status(path)
    if status is None:
        problems.append(
            Problem(
                "daemon_unreachable",
                f"maild serve is not running (no answer on {path}): start it ('systemctl start maild')",
            )
        )
    elif status.get("status") != "running":
        problems.append(
            Problem(
                "daemon_not_running",
                f"maild serve (pid {status.get('pid')}) is {status.get('status')}: start it again once it "
                "has stopped ('systemctl start maild')",
            )
        )
    return status


def _spool(session: Session, cfg: Config, now: dt.datetime, problems: list[Problem]) -> dict[str, Any]:
    waiting = SpoolEntry.state == "received"
    review = and_(SpoolEntry.state == "done", SpoolEntry.outcome.in_(AWAITING_REVIEW))
    counts = {"waiting": 0, **{outcome: 0 for outcome in AWAITING_REVIEW}}
    oldest: dt.datetime | None = None
    rows = session.execute(
        select(SpoolEntry.state, SpoolEntry.outcome, func.count(), func.min(SpoolEntry.received_at))
        .where(or_(waiting, review))
        .group_by(SpoolEntry.state, SpoolEntry.outcome)
    )
    for state, outcome, count, first in rows:
        if state == "received":  # a released row is 'received' with no outcome; a retried one may have one
            counts["waiting"] += count
            oldest = first if oldest is None or (first is not None and first < oldest) else oldest
        elif outcome is not None:  # always, by the query: a 'done' row here has an AWAITING_REVIEW outcome
            counts[outcome] += count
    age = (now - oldest).total_seconds() if oldest is not None else None
    stuck_after = max(STUCK_SECONDS, STALE_INTERVALS * cfg.schedule.recovery_seconds)
    if age is not None and age > stuck_after:
        problems.append(
            Problem(
                "spool_stuck",
                f"{_count(counts['waiting'], 'received mail')} not processed yet, the oldest for "
                f"{_duration(age)}: {LOG_HINT}",
            )
        )
    if counts["quarantined"]:
        problems.append(
            Problem(
                "spool_quarantined",
                f"{_count(counts['quarantined'], 'mail')} quarantined: see 'maildctl spool list "
                "--quarantined', then 'maildctl spool release ID' (good mail) or 'maildctl spool delete ID'",
            )
        )
    if counts["held"]:
        problems.append(
            Problem(
                "spool_held",
                f"{_count(counts['held'], 'mail')} held (not accepted as an agent's reply): see "
                "'maildctl spool list --outcome held' and 'maildctl spool show ID', then 'maildctl spool "
                "delete ID'",
            )
        )
    return {
        "waiting": counts["waiting"],
        "quarantined": counts["quarantined"],
        "held": counts["held"],
        "oldest_waiting_at": iso(oldest),
        "oldest_waiting_seconds": round(age, 1) if age is not None else None,
    }


def _outbox(session: Session, now: dt.datetime, problems: list[Problem]) -> dict[str, Any]:
    queued = OutboxMessage.status == "queued"
    # maild.outbound.sender: a queued row with attempts behind it had a temporary failure and waits for its
    # retry.
    failing = and_(queued, OutboxMessage.attempts > 0)
    failed = OutboxMessage.status == "failed"
    (n_queued, n_due, n_failing, n_failed, oldest_queued, oldest_failing) = session.execute(
        select(
            func.count(case((queued, 1))),
            func.count(case((and_(queued, OutboxMessage.next_attempt_at <= now), 1))),
            func.count(case((failing, 1))),
            func.count(case((failed, 1))),
            func.min(case((queued, OutboxMessage.created_at))),
            func.min(case((failing, OutboxMessage.created_at))),
        ).where(OutboxMessage.status.in_(("queued", "failed")))
    ).one()
    last_error = ""
    if n_failing or n_failed:
        last_error = (
            session.scalars(
                select(OutboxMessage.last_error)
                .where(or_(failing, failed), OutboxMessage.last_error != "")
                .order_by(OutboxMessage.id.desc())
                .limit(1)
            ).first()
            or ""
        )
    error = f" (last error: {_shorten(last_error)})" if last_error else ""
    if n_failing:
        problems.append(
            Problem(
                "outbox_failing",
                f"{_count(n_failing, 'outgoing mail')} failing to send and retried since "
                f"{_at(oldest_failing)}{error}: see 'maildctl outbox list --status queued'",
            )
        )
    if n_failed:
        problems.append(
            Problem(
                "outbox_failed",
                f"{_count(n_failed, 'outgoing mail')} failed for good{error}: see 'maildctl outbox list "
                "--status failed', then 'maildctl outbox retry --failed' once the cause is fixed",
            )
        )
    return {
        "queued": n_queued,
        "due": n_due,
        "failing": n_failing,
        "failed": n_failed,
        "oldest_queued_at": iso(oldest_queued),
        "oldest_failing_at": iso(oldest_failing),
        "last_error": last_error,
    }


def _jobs(
    session: Session, cfg: Config, now: dt.datetime, daemon: dict[str, Any] | None, problems: list[Problem]
) -> list[dict[str, Any]]:
    from maild.ingress.serve_jobs import (
        job_intervals,  # serve's own list: health expects exactly the jobs it runs
    )

    runs = {row.name: row for row in session.scalars(select(JobRun))}
    running = daemon is not None and daemon.get("status") == "running"
    uptime = float(daemon.get("uptime_seconds") or 0) if running and daemon is not None else 0.0
    found = []
    for name, seconds in job_intervals(cfg).items():
        row = runs.get(name)
        window = STALE_INTERVALS * seconds
        since_ok = (now - row.last_ok_at).total_seconds() if row is not None and row.last_ok_at else None
        # Only while a daemon has been up for the whole window: a stopped daemon is its own problem, and
        # a daemon that just started has not had the time.
        stale = running and uptime > window and (since_ok is None or since_ok > window)
        every = f"every {_duration(seconds)}"
        if row is not None and row.ok is False:
            problems.append(
                Problem(
                    "job_failed",
                    f"scheduled job {name} failed at {_at(row.finished_at)}: {_shorten(row.error)}: "
                    + LOG_HINT,
                )
            )
        elif stale:
            last = f"since {_at(row.last_ok_at)}" if row is not None and row.last_ok_at else "since the start"
            problems.append(
                Problem("job_stale", f"scheduled job {name} ({every}) has not succeeded {last}: {LOG_HINT}")
            )
        found.append(
            {
                "name": name,
                "interval_seconds": seconds,
                "instance": row.instance if row is not None else None,
                "started_at": iso(row.started_at) if row is not None else None,
                "finished_at": iso(row.finished_at) if row is not None else None,
                "ok": row.ok if row is not None else None,
                "error": row.error if row is not None else "",
                "last_ok_at": iso(row.last_ok_at) if row is not None else None,
                "stale": stale,
            }
        )
    return found


def _automation(session: Session, cfg: Config, now: dt.datetime, problems: list[Problem]) -> dict[str, Any]:
    def report(code: str, message: str) -> None:
        problems.append(Problem(code, message))

    return {
        "webhooks": health_automation.webhooks(session, cfg, now, report),
        "presence": health_automation.presence(session, now),
        "rules": health_automation.rules(session, cfg, report),
    }


def _disk(path: Path, problems: list[Problem]) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:  # no data dir: not initialised, or the wrong config
        problems.append(
            Problem("disk_unknown", f"cannot see the data directory {path}: {exc.strerror or exc}")
        )
        return {"path": str(path), "free_bytes": None, "total_bytes": None, "free_percent": None, "low": None}
    percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    low = usage.free < MIN_FREE_BYTES or percent < MIN_FREE_PERCENT
    if low:
        problems.append(
            Problem(
                "disk_low",
                f"only {_size(usage.free)} ({percent:.1f}%) free for the data directory {path}: free some "
                "space ('maildctl spool purge' deletes old raw mail)",
            )
        )
    return {
        "path": str(path),
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "free_percent": round(percent, 1),
        "min_free_bytes": MIN_FREE_BYTES,
        "min_free_percent": MIN_FREE_PERCENT,
        "low": low,
    }


def _templates(template_dir: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    from maild.outbound.templating import check_templates  # Jinja2: paid for by this command only

    found = check_templates(template_dir)
    for problem in found:
        problems.append(
            Problem(
                "template_invalid",
                f"template {problem}: fix {template_dir / problem.desk / problem.file} and check it with "
                f"'maildctl template check {problem.desk}' (until then maild uses the last good version, "
                "else the package's)",
            )
        )
    return [{"desk": p.desk, "file": p.file, "line": p.line, "error": p.error} for p in found]


def _database_problem(exc: OperationalError | ProgrammingError) -> Problem:
    text = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
    # As admin_cli.main tells them apart: a missing table is an uninitialised database, the rest is down.
    if "no such table" in text or (isinstance(exc, ProgrammingError) and "does not exist" in text):
        return Problem("database_schema", "the database has no schema yet: run 'maildctl init'")
    return Problem(
        "database_unavailable", f"database unavailable: {text}: check [database] url and the server"
    )


# --- text output ---------------------------------------------------------------------------------------


def print_text(report: dict[str, Any]) -> None:
    """The verdict first (monitoring shows the first line), then one line per problem, then the details."""
    problems = report["problems"]
    if problems:
        print(f"maild needs an admin: {_count(len(problems), 'problem')}")
        for problem in problems:
            print(f"- {problem['message']}")
    else:
        print("maild is healthy")
    print()
    for label, value in _details(report):
        print(f"{label:<10} {value}")


def _details(report: dict[str, Any]) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    daemon = report["daemon"]
    if daemon is None:
        lines.append(("daemon", "not reachable"))
    else:
        lines.append(
            (
                "daemon",
                f"{daemon.get('status')}, pid {daemon.get('pid')}, version {daemon.get('version')}, "
                f"up {_duration(float(daemon.get('uptime_seconds') or 0))}",
            )
        )
        listeners = daemon.get("listeners") or []
        shown = ", ".join(f"{item.get('protocol')} {item.get('address')}" for item in listeners)
        lines.append(("listeners", shown or "none"))
    spool = report["spool"]
    if spool is not None:
        oldest = spool["oldest_waiting_seconds"]
        since = f" (the oldest for {_duration(oldest)})" if oldest is not None else ""
        lines.append(
            (
                "spool",
                f"{spool['waiting']} waiting{since}, {spool['quarantined']} quarantined, "
                f"{spool['held']} held",
            )
        )
    outbox = report["outbox"]
    if outbox is not None:
        lines.append(
            (
                "outbox",
                f"{outbox['queued']} queued ({outbox['due']} due, {outbox['failing']} failing), "
                f"{outbox['failed']} failed",
            )
        )
    if report["jobs"] is not None:
        lines.append(("jobs", "; ".join(_job_line(job) for job in report["jobs"])))
    disk = report["disk"]
    if disk["free_bytes"] is not None:
        lines.append(
            (
                "disk",
                f"{_size(disk['free_bytes'])} free of {_size(disk['total_bytes'])} ({disk['free_percent']}%) "
                f"at {disk['path']}",
            )
        )
    templates = report["templates"]
    lines.append(("templates", f"{_count(len(templates), 'problem')}" if templates else "ok"))
    return lines + health_automation.detail_lines(report)


def _job_line(job: dict[str, Any]) -> str:
    if job["ok"] is None:
        return f"{job['name']} never run"
    state = "ok" if job["ok"] else "FAILED"
    return f"{job['name']} {state} {job['finished_at'] or job['started_at']}"


# --- formatting ----------------------------------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def _at(value: dt.datetime | None) -> str:
    return iso(value) or "an unknown time"


def _shorten(text: str, limit: int = 200) -> str:
    """One line of an error for a problem line (an SMTP answer may span several)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
