"""maildctl report: tickets opened/closed, first-response and resolution times, backlog, time spent."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from sqlalchemy import select

from maild.admin_cli.common import App, UserError, print_json, print_table
from maild.storage.models import Desk
from maild.tickets.reports import build_report


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="tickets opened/closed, first-response and resolution times (median, p90), backlog, time spent, "
        "customers' ratings",
        description="Per desk and per agent. Times are minutes; the backlog counts every open ticket "
        "whatever its age.",
    )
    report.add_argument("--desk", help="only this desk")
    report.add_argument("--since", help="window start, YYYY-MM-DD or an ISO time in UTC (default: all time)")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=run_report)


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since {value!r} is not a date: give YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _duration(stats: dict[str, Any]) -> str:
    if not stats["count"]:
        return "-"
    return f"{_minutes(stats['median_minutes'])} / {_minutes(stats['p90_minutes'])} (n={stats['count']})"


def _minutes(value: float) -> str:
    if value < 60:
        return f"{value:.0f}m"
    if value < 48 * 60:
        return f"{value / 60:.1f}h"
    return f"{value / 1440:.1f}d"


def run_report(app: App, args: argparse.Namespace) -> int:
    since = _since(args.since)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with app.session() as session:
        desk = None
        if args.desk is not None:
            desk = session.scalars(select(Desk).where(Desk.name == args.desk)).first()
            if desk is None:
                names = ", ".join(session.scalars(select(Desk.name).order_by(Desk.name))) or "none yet"
                raise UserError(f"no desk {args.desk!r} (desks: {names})")
        report = build_report(session, desk=desk, since=since, now=now)
    if args.json:
        print_json(report)
        return 0
    print(f"from {report['since'] or 'the start'} to {report['until']}")
    print()
    print_table(
        ["DESK", "OPENED", "CLOSED", "FIRST RESPONSE median/p90", "RESOLUTION median/p90", "TIME SPENT"],
        [
            [
                d["desk"],
                d["opened"],
                d["closed"],
                _duration(d["first_response"]),
                _duration(d["resolution"]),
                _minutes(d["time_spent_minutes"]) if d["time_spent_minutes"] else "-",
            ]
            for d in report["desks"]
        ],
    )
    print()
    print_table(
        ["DESK", "BACKLOG"],
        [[d["desk"], ", ".join(f"{s} {n}" for s, n in d["backlog"].items()) or "-"] for d in report["desks"]],
    )
    print()
    print_table(
        ["AGENT", "FIRST RESPONSES median/p90", "RESOLUTIONS median/p90", "TIME SPENT"],
        [
            [
                a["agent"],
                _duration(a["first_responses"]),
                _duration(a["resolutions"]),
                _minutes(a["time_spent_minutes"]) if a["time_spent_minutes"] else "-",
            ]
            for a in report["agents"]
        ],
    )
    _print_ratings(report)
    return 0


def _rating(stats: dict[str, Any]) -> list[Any]:
    """count, mean, distribution "1:n 2:n 3:n 4:n 5:n" (dashes without ratings)."""
    if not stats["count"]:
        return [0, "-", "-"]
    shown = " ".join(f"{score}:{n}" for score, n in stats["distribution"].items())
    return [stats["count"], f"{stats['mean']:.2f}", shown]


def _print_ratings(report: dict[str, Any]) -> None:
    """Ratings of agent replies by customers, when there are any (desks without web ratings have none)."""
    if not any(d["ratings"]["count"] for d in report["desks"]):
        return
    print()
    print_table(
        ["DESK", "RATINGS", "MEAN", "DISTRIBUTION"],
        [[d["desk"], *_rating(d["ratings"])] for d in report["desks"] if d["ratings"]["count"]],
    )
    print()
    print_table(
        ["AGENT", "RATINGS", "MEAN", "DISTRIBUTION"],
        [[a["agent"], *_rating(a["ratings"])] for a in report["agents"] if a["ratings"]["count"]],
    )
