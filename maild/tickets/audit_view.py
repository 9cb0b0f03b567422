"""`maildctl audit`: the audit log of every change, settings and tickets alike, newest first, filtered by
action, actor, ticket, desk and time. A row's JSON is `ticket log --json`'s (ticket_views.log_json) with
fields added only: `id` (the row's) and `desk`.

The known action names are listed here, not read from the table: a query of the distinct stored actions
would reject `--action rule_add` on a database where no rule was added yet (a script written against a
fresh install breaks), and could not say in --help or in an error what exists. tests/test_audit_command.py
walks the code's audit writers and fails when one writes an action missing here. Names stored by another
version (in the table, not in this list) are accepted too, so that old rows stay searchable."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from maild.storage.models import AuditLog, Desk, Ticket, naive_utc
from maild.tickets import ticket_ops
from maild.tickets.ticket_checks import InvalidValue, MalformedValue
from maild.tickets.ticket_query import age
from maild.tickets.ticket_views import log_json, whole_conversation

DEFAULT_LIMIT = 50

# What one ticket's changes are called (also in `ticket log`), then the changes that are no ticket's.
TICKET_ACTIONS = (
    "ticket_created", "message_added", "desk_reply", "agent_reply", "agent_note", "ticket_opened",
    "reply", "note", "status", "priority", "assign", "category", "desk", "tag", "untag", "time",
    "cc_add", "cc_remove", "flag", "unflag", "merge", "split", "split_from", "rating", "auto_close",
    "escalation", "rule", "rule_send", "rule_notify", "rule_webhook", "desk_unavailable", "link_issue",
    "links_revoke", "contact_bouncing", "outbox_retry", "ticket_delete", "ticket_block_and_delete",
)  # fmt: skip
SETTING_ACTIONS = (
    "desk_add", "desk_set", "desk_rename", "desk_remove", "desk_address_add", "desk_address_remove",
    "agent_add", "agent_set", "agent_away", "agent_back", "status_add", "status_remove",
    "category_add", "category_remove", "category_agents", "canned_add", "canned_update", "canned_remove",
    "escalation_add", "escalation_set", "escalation_remove", "rule_add", "rule_set", "rule_move",
    "rule_remove", "webhook_add", "webhook_set", "webhook_remove", "webhook_redeliver", "api_token_add",
    "api_token_remove", "block_add", "block_remove", "contact_add", "contact_name", "contact_attr",
    "contact_unbounce", "contact_forget", "import",
    "spool_release", "spool_delete", "spool_purge",
)  # fmt: skip
KNOWN_ACTIONS = (*TICKET_ACTIONS, *SETTING_ACTIONS)


def _since_option(_name: str) -> str:
    return "--since"


@dataclass(frozen=True)
class AuditFilters:
    """The filters as given (empty/None: not given); checked when the query is built."""

    actions: list[str] = field(default_factory=list)
    actor: str | None = None
    ticket: str | None = None
    desk: str | None = None
    since: str | None = None
    limit: int = DEFAULT_LIMIT


def since_moment(text: str, now: dt.datetime) -> dt.datetime:
    """`--since`: an age back from `now` (30m, 12h, 14d, 2w, as `ticket list --older-than`) or an ISO date
    or date-time (UTC unless it says otherwise); naive UTC, as the rows store it."""
    value = text.strip()
    if value[-1:].lower() in ("m", "h", "d", "w") and value[:-1].isdigit():
        return naive_utc(now - age(value, _since_option))
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedValue(
            f"invalid --since {text!r}: give an age (30m, 12h, 14d, 2w) or a date (2026-03-01, "
            "2026-03-01T10:00)"
        ) from None
    return naive_utc(moment) if moment.tzinfo else moment


def known_actions(session: Session) -> list[str]:
    stored = session.scalars(select(AuditLog.action).distinct())
    return [*KNOWN_ACTIONS, *sorted(set(stored) - set(KNOWN_ACTIONS))]


def _checked_actions(session: Session, actions: list[str]) -> list[str]:
    wanted = [a.strip() for given in actions for a in given.split(",") if a.strip()]  # --action a,b too
    if not wanted:
        raise MalformedValue("--action is empty: give an action's name (see 'maildctl audit --help')")
    unknown = [a for a in wanted if a not in KNOWN_ACTIONS]
    if unknown:
        allowed = known_actions(session)
        missing = [a for a in unknown if a not in allowed]
        if missing:
            raise InvalidValue(f"unknown --action {', '.join(map(repr, missing))}: use {', '.join(allowed)}")
    return wanted


def _detail_text(key: str) -> ColumnElement[Any]:
    return AuditLog.detail[key].as_string()


def _ticket_condition(session: Session, number: str) -> ColumnElement[bool]:
    """The rows of ticket `number` and of the tickets merged into it (as `ticket log`), and the row that
    deleted it: a deleted ticket's rows lost their ticket_id, only its delete row still names it."""
    deleted = AuditLog.ticket_id.is_(None) & (func.lower(_detail_text("number")) == number.strip().lower())
    ticket = ticket_ops.ticket_by_number(session, number)
    if ticket is None:
        if session.scalar(select(AuditLog.id).where(deleted).limit(1)) is None:
            raise InvalidValue(
                f"no ticket {number!r} (--ticket), nor a deleted one in the audit log",
                ": see 'maildctl ticket list'",
            )
        return deleted
    survivor, merged = whole_conversation(session, ticket)
    return or_(AuditLog.ticket_id.in_([survivor.id, *(t.id for t in merged)]), deleted)


def _desk_condition(session: Session, name: str) -> ColumnElement[bool]:
    """Rows whose ticket is on desk `name` now, or whose detail names it (`desk`: every setting of a desk
    stores its name there, as it was then). A removed desk's name is accepted when rows name it."""
    named = _detail_text("desk") == name
    desk = session.scalars(select(Desk).where(Desk.name == name)).first()
    if desk is None:
        if session.scalar(select(AuditLog.id).where(named).limit(1)) is None:
            raise InvalidValue(
                f"no desk named {name!r} (--desk), nor one in the audit log", ": see 'maildctl desk list'"
            )
        return named
    return or_(AuditLog.ticket_id.in_(select(Ticket.id).where(Ticket.desk_id == desk.id)), named)


def audit_query(session: Session, given: AuditFilters, now: dt.datetime) -> Select[AuditLog]:
    """The rows the filters select, newest first; a wrong value raises InvalidValue."""
    if given.limit < 0:
        raise MalformedValue(f"invalid --limit {given.limit}: give 0 (all rows) or more")
    query = select(AuditLog).order_by(AuditLog.at.desc(), AuditLog.id.desc())
    if given.actions:
        query = query.where(AuditLog.action.in_(_checked_actions(session, given.actions)))
    if given.actor is not None:
        if not given.actor.strip():
            raise MalformedValue(
                "--actor is empty: give an actor as the log shows it (an address, rule:NAME …)"
            )
        query = query.where(func.lower(AuditLog.actor) == given.actor.strip().lower())
    if given.ticket is not None:
        query = query.where(_ticket_condition(session, given.ticket))
    if given.desk is not None:
        query = query.where(_desk_condition(session, given.desk))
    if given.since is not None:
        query = query.where(AuditLog.at >= since_moment(given.since, now))
    return query.limit(given.limit) if given.limit else query


def redacted_url(url: str) -> str:
    """`url` without the password of its user part (https://user:***@host/…). Webhook rows written before
    the writer redacted it would otherwise show it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _row_json(entry: AuditLog, numbers: dict[int, str], desks: dict[int, str]) -> dict[str, Any]:
    data = log_json(entry, numbers)
    for key in ("url",):
        if isinstance(data["detail"].get(key), str):
            data["detail"][key] = redacted_url(data["detail"][key])
    named = (entry.detail or {}).get("desk")
    on_desk = desks.get(entry.ticket_id) if entry.ticket_id is not None else None
    return {"id": entry.id, **data, "desk": on_desk or (named if isinstance(named, str) else None)}


def audit_rows(session: Session, given: AuditFilters, now: dt.datetime) -> list[dict[str, Any]]:
    """`maildctl audit --json`: the rows, newest first, each `ticket log --json`'s fields plus `id` and
    `desk` (the desk of its ticket now, else the one its detail names, else null)."""
    entries = list(session.scalars(audit_query(session, given, now)))
    ids = {e.ticket_id for e in entries if e.ticket_id is not None}
    numbers: dict[int, str] = {}
    desks: dict[int, str] = {}
    if ids:
        found = session.execute(
            select(Ticket.id, Ticket.number, Desk.name)
            .join(Desk, Desk.id == Ticket.desk_id)
            .where(Ticket.id.in_(ids))
        )
        for ticket_id, number, desk in found:
            numbers[ticket_id], desks[ticket_id] = number, desk
    return [_row_json(e, numbers, desks) for e in entries]
