"""maildctl health's automation checks (issue 19): webhooks, presence and rules, beside the queues.

  webhooks   deliveries pending (the sender's queue), overdue (due for longer than overdue_after: the
             sender in `maild serve` is not running or stuck, a problem), retrying (a temporary failure
             behind them), and failed in the last FAILED_WINDOW and not redelivered (given up, a problem as
             the outbox's failed mail is: the receiver missed events), in all and per webhook. Failed
             deliveries stay in the table (`webhook redeliver` makes a new one), so only recent ones count.
  presence   desks with active agents none of whom is present right now: not a problem (a weekend or a
             holiday), but said, with what the desk then does (notify-all: every active agent is told
             anyway; desk-unavailable: customers get the desk_unavailable mail, agents nothing).
  rules      each active rule as stored, checked as `rule add` checks it (maild.tickets.rule_store): a rule
             whose text no longer parses is skipped by the engine, one that names a removed agent,
             category, status, webhook or a missing template fails where it acts: both are problems.

Each check reports its problems through `report(code, message)`; the JSON fields are stable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session, aliased, selectinload

from maild.admin_cli.common import iso
from maild.admin_cli.escalations import template_exists
from maild.config import Config
from maild.storage.models import Desk, Rule, Webhook, WebhookDelivery, naive_utc
from maild.tickets.notices import DESK_UNAVAILABLE, DESK_UNAVAILABLE_TEMPLATE
from maild.tickets.presence import is_present
from maild.tickets.rule_store import stored_rule_problems

Report = Callable[[str, str], None]
OVERDUE_SECONDS = 15 * 60  # a delivery due this long ago and not taken: the sender is not working
FAILED_WINDOW = dt.timedelta(hours=24)
LOG_HINT = "see maild serve's log ('journalctl -u maild')"


def overdue_after(cfg: Config) -> dt.timedelta:
    """Past a claim's lease (the POST's timeout and a minute) and several polls, whatever is configured."""
    return dt.timedelta(
        seconds=max(OVERDUE_SECONDS, 3 * cfg.webhooks.poll_seconds, cfg.webhooks.timeout + 60)
    )


def webhooks(session: Session, cfg: Config, now: dt.datetime, report: Report) -> dict[str, Any]:
    at = naive_utc(now)
    failed = and_(
        WebhookDelivery.state == "failed",
        WebhookDelivery.last_attempt_at >= at - FAILED_WINDOW,
        ~_redelivered(),
    )
    counts, oldest_overdue = _delivery_counts(session, failed, at - overdue_after(cfg))
    hooks = session.execute(select(Webhook.id, Webhook.name, Webhook.active).order_by(Webhook.name)).all()
    zero = {"pending": 0, "overdue": 0, "retrying": 0, "failed_24h": 0}
    by_webhook = [{"name": name, "active": active, **counts.get(i, zero)} for i, name, active in hooks]
    totals = {key: sum(counts.get(i, zero)[key] for i, _, _ in hooks) for key in zero}
    last_error = ""
    if totals["failed_24h"]:
        last_error = (
            session.scalars(
                select(WebhookDelivery.last_error).where(failed).order_by(WebhookDelivery.id.desc()).limit(1)
            ).first()
            or ""
        )
        per = ", ".join(f"{r['name']}: {r['failed_24h']}" for r in by_webhook if r["failed_24h"])
        error = f" (last error: {_shorten(last_error)})" if last_error else ""
        report(
            "webhook_failed",
            f"{_count(totals['failed_24h'], 'webhook delivery', 'webhook deliveries')} failed for good in "
            f"the last 24 h ({per}){error}: see 'maildctl webhook deliveries --state failed', then "
            "'maildctl webhook redeliver ID' once the receiver is fixed",
        )
    if totals["overdue"]:
        report(
            "webhook_overdue",
            f"{_count(totals['overdue'], 'webhook delivery', 'webhook deliveries')} overdue, the oldest "
            f"due since {iso(oldest_overdue)}: maild serve's webhook sender is not running or is stuck: "
            + LOG_HINT,
        )
    extra = {"oldest_overdue_at": iso(oldest_overdue), "last_error": last_error, "by_webhook": by_webhook}
    return totals | extra


def _delivery_counts(
    session: Session, failed: Any, late_since: dt.datetime
) -> tuple[dict[int, dict[str, int]], dt.datetime | None]:
    """Per webhook: pending, overdue (due before late_since), retrying, failed_24h (`failed`); and when
    the oldest overdue delivery was due. One query over the rows the state index finds."""
    pending = WebhookDelivery.state == "pending"
    overdue = and_(pending, WebhookDelivery.next_attempt_at < late_since)
    rows = session.execute(
        select(
            WebhookDelivery.webhook_id,
            func.count(case((pending, 1))),
            func.count(case((overdue, 1))),
            func.count(case((and_(pending, WebhookDelivery.attempts > 0), 1))),
            func.count(case((failed, 1))),
            func.min(case((overdue, WebhookDelivery.next_attempt_at))),
        )
        .where(WebhookDelivery.state.in_(("pending", "failed")))
        .group_by(WebhookDelivery.webhook_id)
    )
    counts: dict[int, dict[str, int]] = {}
    oldest: dt.datetime | None = None
    for webhook_id, n_pending, n_overdue, n_retrying, n_failed, first in rows:
        counts[webhook_id] = {"pending": n_pending, "overdue": n_overdue, "retrying": n_retrying}
        counts[webhook_id]["failed_24h"] = n_failed
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return counts, oldest


def _redelivered() -> Any:
    """A delivery queued again by `webhook redeliver`: a later delivery to its webhook with its body (the
    same bytes, its `delivery` field included), whatever became of that one (it is counted itself)."""
    again = aliased(WebhookDelivery)
    return exists().where(
        again.webhook_id == WebhookDelivery.webhook_id,
        again.id > WebhookDelivery.id,
        again.event == WebhookDelivery.event,
        again.body == WebhookDelivery.body,
    )


def presence(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Desks whose active agents are all away now (desks without active agents are not about presence)."""
    desks = session.scalars(select(Desk).options(selectinload(Desk.agents)).order_by(Desk.name))
    nobody = []
    for desk in desks:
        active = [a for a in desk.agents if a.active]
        if active and not any(is_present(a, now) for a in active):
            unavailable = desk.when_nobody_present == DESK_UNAVAILABLE
            nobody.append(
                {
                    "desk": desk.name,
                    "agents_away": len(active),
                    "when_nobody_present": desk.when_nobody_present,
                    "customers_get_desk_unavailable": unavailable,
                }
            )
    return {"nobody_present": nobody}


def rules(session: Session, cfg: Config, report: Report) -> list[dict[str, Any]]:
    """The active rules with something wrong, each with every problem found (one problem line each)."""
    query = (
        select(Rule, Desk)
        .join(Desk, Desk.id == Rule.desk_id)
        .where(Rule.active)
        .order_by(Desk.name, Rule.position)
    )
    broken = []
    for rule, desk in session.execute(query):
        parsed, problems = stored_rule_problems(session, desk, rule)
        for action in parsed.actions if parsed is not None else ():
            if action.verb == "send" and not template_exists(cfg, desk, action.value):
                problems.append(f"no mail template {action.value!r} (see 'maildctl template list')")
        if not problems:
            continue
        broken.append({"desk": desk.name, "name": rule.name, "problems": problems})
        more = f" (and {len(problems) - 1} more: 'maildctl health --json')" if len(problems) > 1 else ""
        report(
            "rule_broken",
            f"rule {rule.name} on desk {desk.name}: {problems[0]}{more}: fix it with 'maildctl rule set "
            f"{desk.name} {rule.name} …' or remove it ('maildctl rule remove {desk.name} {rule.name}')",
        )
    return broken


def detail_lines(report: dict[str, Any]) -> list[tuple[str, str]]:
    """health's detail lines for these checks (none for a check the database did not answer)."""
    lines = []
    hooks = report.get("webhooks")
    if hooks is not None:
        lines.append(
            (
                "webhooks",
                f"{hooks['pending']} pending ({hooks['overdue']} overdue, {hooks['retrying']} retrying), "
                f"{hooks['failed_24h']} failed in 24 h",
            )
        )
    desks = report.get("presence")
    if desks is not None:
        lines.append(("presence", _presence_line(desks["nobody_present"])))
    broken = report.get("rules")
    if broken is not None:
        lines.append(("rules", f"{_count(len(broken), 'broken rule')}" if broken else "ok"))
    return lines


def _presence_line(nobody: list[dict[str, Any]]) -> str:
    if not nobody:
        return "someone present on every desk with agents"
    told = {
        True: f"customers get {DESK_UNAVAILABLE_TEMPLATE}, no agent is told",
        False: "every active agent is told anyway",
    }
    return "nobody present on " + "; ".join(
        f"{d['desk']} ({d['when_nobody_present']}: {told[d['customers_get_desk_unavailable']]})"
        for d in nobody
    )


def _count(n: int, noun: str, plural: str = "") -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def _shorten(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
