"""maildctl webhook add|set|list|remove|deliveries|show|redeliver: URLs told of ticket events (signed JSON
POSTs, sent by `maild serve`: maild.outbound.webhook_sender). Every change is in the audit
log; the secret never is, and is printed only by `add` and `set --new-secret`."""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, find_desk, iso, print_json, print_table, who
from maild.storage.events import EVENT_KINDS
from maild.storage.models import Desk, Ticket, Webhook, WebhookDelivery, utcnow
from maild.tickets import webhook_queue
from maild.tickets.audit_view import redacted_url
from maild.tickets.ticket_ops import record

DELIVERY_STATES = ("pending", "delivered", "failed")
NAME_MAX = 100


def register(commands: Any) -> None:
    sub = command_group(commands, "webhook", "URLs told of ticket events (signed JSON POSTs)")
    add = sub.add_parser("add", help="subscribe a URL to ticket events")
    add.add_argument("name", metavar="NAME")
    add.add_argument("url", metavar="URL", help="http:// or https:// URL the events are POSTed to")
    which = add.add_mutually_exclusive_group()
    which.add_argument("--events", help=f"comma-separated event kinds: {', '.join(EVENT_KINDS)}")
    which.add_argument("--all", action="store_true", help="every event kind (the default)")
    add.add_argument("--desk", help="only this desk's tickets (default: every desk)")
    add.add_argument("--secret", help="the HMAC key (default: a random one, printed once)")
    add.set_defaults(handler=add_webhook)
    _register_set(sub)
    lst = sub.add_parser("list", help="list the webhooks and their deliveries' states")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=list_webhooks)
    remove = sub.add_parser("remove", help="remove a webhook and its deliveries")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=remove_webhook)
    deliveries = sub.add_parser("deliveries", help="recent deliveries, newest first")
    deliveries.add_argument("name", metavar="NAME", nargs="?", help="only this webhook's")
    deliveries.add_argument("--state", help=f"only this state ({', '.join(DELIVERY_STATES)})")
    deliveries.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    deliveries.add_argument("--json", action="store_true")
    deliveries.set_defaults(handler=list_deliveries)
    show = sub.add_parser("show", help="one delivery: its state, attempts and the body as sent")
    show.add_argument("delivery_id", metavar="DELIVERY_ID")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_delivery)
    again = sub.add_parser("redeliver", help="queue a delivery's body again (the same bytes)")
    again.add_argument("delivery_id", metavar="DELIVERY_ID")
    again.set_defaults(handler=redeliver)


def _register_set(sub: Any) -> None:
    change = sub.add_parser(
        "set",
        help="change a webhook's URL, events, desk, secret, or make it (in)active",
        description="An inactive webhook is queued no new deliveries (those pending are still sent).",
    )
    change.add_argument("name", metavar="NAME")
    change.add_argument("--url", help="http:// or https:// URL the events are POSTed to")
    which = change.add_mutually_exclusive_group()
    which.add_argument("--events", help=f"comma-separated event kinds: {', '.join(EVENT_KINDS)}")
    which.add_argument("--all", action="store_true", help="every event kind")
    where = change.add_mutually_exclusive_group()
    where.add_argument("--desk", help="only this desk's tickets")
    where.add_argument("--all-desks", action="store_true", help="every desk's tickets")
    state = change.add_mutually_exclusive_group()
    state.add_argument("--active", action="store_true", dest="activate", help="queue deliveries again")
    state.add_argument("--inactive", action="store_true", help="queue no new deliveries")
    key = change.add_mutually_exclusive_group()
    key.add_argument("--secret", help="the new HMAC key (1-200 characters)")
    key.add_argument("--new-secret", action="store_true", help="a random new key, printed once")
    change.set_defaults(handler=set_webhook)


def _valid_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or any(c.isspace() for c in name):
        raise UserError(f"webhook name {name!r}: use 1-{NAME_MAX} characters without spaces, e.g. crm")
    return name


def _valid_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(
            f"URL {url!r}: must be http:// or https:// with a host, e.g. https://crm.example/hook"
        )
    return url.strip()


def _valid_events(text: str | None) -> list[str]:
    if text is None:
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in EVENT_KINDS]
    if unknown or not kinds:
        raise UserError(f"unknown event {', '.join(unknown) or repr(text)}: use {', '.join(EVENT_KINDS)}")
    return list(dict.fromkeys(kinds))


def _valid_secret(secret: str | None) -> str:
    """The given secret, or a random one (None)."""
    if secret is None:
        return secrets.token_hex(32)
    if not secret.strip() or len(secret) > 200:
        raise UserError("--secret: give 1-200 characters, or leave it out for a random one")
    return secret


def _find(session: Session, name: str) -> Webhook:
    webhook = session.scalar(select(Webhook).where(Webhook.name == name))
    if webhook is None:
        raise UserError(f"no webhook {name!r}: see 'maildctl webhook list'")
    return webhook


def _audit_fields(webhook: Webhook, desk: str | None) -> dict[str, Any]:
    # A URL's user:password@ is a credential: the audit log, kept for years, never holds it.
    url = redacted_url(webhook.url)
    return {"name": webhook.name, "url": url, "events": list(webhook.events), "desk": desk}


def add_webhook(app: App, args: argparse.Namespace) -> int:
    name, url, events = _valid_name(args.name), _valid_url(args.url), _valid_events(args.events)
    secret = _valid_secret(args.secret)
    with app.session() as session:
        desk = find_desk(session, args.desk, "--desk") if args.desk is not None else None
        if session.scalar(select(Webhook.id).where(Webhook.name == name)) is not None:
            raise UserError(f"webhook {name!r} exists already: remove it first, or choose another name")
        webhook = Webhook(name=name, url=url, secret=secret, events=events, desk_id=desk.id if desk else None)
        webhook.created_by = who()
        session.add(webhook)
        webhook_queue.forget_cached(session)
        record(session, "webhook_add", _audit_fields(webhook, args.desk), actor=who())
    subscribed = f"{', '.join(events) or 'all events'}, {args.desk or 'every desk'}"
    print(f"added webhook {name}: {redacted_url(url)} ({subscribed})")
    if args.secret is None:
        print(f"secret (shown once; the receiver checks X-Hub-Signature-256 with it): {secret}")
    return 0


def _changes(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    """The columns `webhook set` changes, checked as `add` checks them (the secret: see set_webhook)."""
    changes: dict[str, Any] = {}
    if args.url is not None:
        changes["url"] = _valid_url(args.url)
    if args.events is not None or args.all:
        changes["events"] = _valid_events(args.events)
    if args.desk is not None:
        changes["desk_id"] = find_desk(session, args.desk, "--desk").id
    elif args.all_desks:
        changes["desk_id"] = None
    if args.activate or args.inactive:
        changes["active"] = bool(args.activate)
    if args.secret is not None or args.new_secret:
        changes["secret"] = _valid_secret(args.secret)
    return changes


def set_webhook(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        changes = _changes(session, args)  # the desk is looked up before the webhook: its error first
        webhook = _find(session, _valid_name(args.name))
        if not changes:
            raise UserError(
                "nothing to change: give --url, --events or --all, --desk or --all-desks, --active or "
                "--inactive, --secret or --new-secret"
            )
        before = _audit_fields(webhook, _desk_name(session, webhook.desk_id)) | {"active": webhook.active}
        for column, value in changes.items():
            setattr(webhook, column, value)
        after = _audit_fields(webhook, _desk_name(session, webhook.desk_id)) | {"active": webhook.active}
        detail = {
            "name": webhook.name,
            "before": before,
            "after": after,
            "secret_changed": "secret" in changes,
        }
        webhook_queue.forget_cached(session)
        record(session, "webhook_set", detail, actor=who())
    state = "active" if after["active"] else "inactive (no new deliveries)"
    events = ", ".join(after["events"]) or "all events"
    print(f"webhook {after['name']}: {after['url']} ({events}, {after['desk'] or 'every desk'}), {state}")
    if args.new_secret:
        print(f"secret (shown once; the receiver checks X-Hub-Signature-256 with it): {changes['secret']}")
    return 0


def _desk_name(session: Session, desk_id: int | None) -> str | None:
    desk = session.get(Desk, desk_id) if desk_id is not None else None
    return desk.name if desk is not None else None


def _webhook_json(webhook: Webhook, desk: str | None, states: dict[str, int]) -> dict[str, Any]:
    return {
        "name": webhook.name,
        "url": redacted_url(webhook.url),  # a user:password@ is shown by no command
        "events": list(webhook.events),  # empty: every event kind
        "all_events": not webhook.events,
        "desk": desk,
        "active": webhook.active,
        "created_by": webhook.created_by,
        "created_at": iso(webhook.created_at),
        "deliveries": {state: states.get(state, 0) for state in DELIVERY_STATES},
    }


def list_webhooks(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        counts: dict[int, dict[str, int]] = {}
        for webhook_id, state, n in session.execute(
            select(WebhookDelivery.webhook_id, WebhookDelivery.state, func.count()).group_by(
                WebhookDelivery.webhook_id, WebhookDelivery.state
            )
        ):
            counts.setdefault(webhook_id, {})[state] = n
        query = select(Webhook, Desk.name).outerjoin(Desk, Desk.id == Webhook.desk_id).order_by(Webhook.name)
        rows = [_webhook_json(w, desk, counts.get(w.id, {})) for w, desk in session.execute(query)]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["NAME", "URL", "EVENTS", "DESK", "ACTIVE", "PENDING", "DELIVERED", "FAILED"],
        [
            [
                r["name"],
                r["url"],
                ",".join(r["events"]) or "all",
                r["desk"] or "all",
                "yes" if r["active"] else "no",
                *(r["deliveries"][s] for s in DELIVERY_STATES),
            ]
            for r in rows
        ],
    )
    return 0


def remove_webhook(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        webhook = _find(session, args.name)
        desk = session.get(Desk, webhook.desk_id) if webhook.desk_id is not None else None
        detail = _audit_fields(webhook, desk.name if desk else None)
        # Explicitly: SQLite enforces ON DELETE CASCADE only with foreign keys switched on.
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
        session.delete(webhook)
        webhook_queue.forget_cached(session)
        record(session, "webhook_remove", detail, actor=who())
    print(f"removed webhook {args.name} and its deliveries")
    return 0


def _delivery_json(delivery: WebhookDelivery, webhook: str, number: str | None) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "webhook": webhook,
        "event": delivery.event,
        "ticket": number,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "last_attempt_at": iso(delivery.last_attempt_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
        "delivered_at": iso(delivery.delivered_at),
    }


def list_deliveries(app: App, args: argparse.Namespace) -> int:
    if args.state is not None and args.state not in DELIVERY_STATES:
        raise UserError(f"unknown --state {args.state!r}: use one of {', '.join(DELIVERY_STATES)}")
    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: give a number of deliveries, at least 1")
    query = (
        select(WebhookDelivery, Webhook.name, Ticket.number)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .outerjoin(Ticket, Ticket.id == WebhookDelivery.ticket_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(args.limit)
    )
    with app.session() as session:
        if args.name is not None:
            query = query.where(WebhookDelivery.webhook_id == _find(session, args.name).id)
        if args.state is not None:
            query = query.where(WebhookDelivery.state == args.state)
        rows = [_delivery_json(d, name, number) for d, name, number in session.execute(query)]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["DELIVERY", "WEBHOOK", "EVENT", "TICKET", "STATE", "ATTEMPTS", "STATUS", "ERROR"],
        [
            [
                r["delivery_id"],
                r["webhook"],
                r["event"],
                r["ticket"],
                r["state"],
                r["attempts"],
                r["last_status"],
                r["last_error"],
            ]
            for r in rows
        ],
    )
    return 0


def _find_delivery(session: Session, delivery_id: str) -> WebhookDelivery:
    wanted = delivery_id.strip().lower()
    delivery = session.scalar(select(WebhookDelivery).where(WebhookDelivery.delivery_id == wanted))
    if delivery is None:
        raise UserError(f"no delivery {delivery_id!r}: see 'maildctl webhook deliveries'")
    return delivery


def show_delivery(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        delivery = _find_delivery(session, args.delivery_id)
        webhook = session.get(Webhook, delivery.webhook_id)
        ticket = session.get(Ticket, delivery.ticket_id) if delivery.ticket_id is not None else None
        data = _delivery_json(delivery, webhook.name if webhook else "", ticket.number if ticket else None)
        data["url"] = redacted_url(webhook.url) if webhook else None
        body = bytes(delivery.body)
    data["body"] = json.loads(body)
    if args.json:
        print_json(data)
        return 0
    for key, value in data.items():
        if key != "body":
            print(f"{key}: {'' if value is None else value}")
    print()
    print(json.dumps(data["body"], indent=2, ensure_ascii=False))
    return 0


def redeliver(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        delivery = _find_delivery(session, args.delivery_id)
        wanted = delivery.delivery_id
        again = webhook_queue.redeliver(session, delivery, utcnow())
        webhook = session.get(Webhook, delivery.webhook_id)
        detail = {
            "webhook": webhook.name if webhook else None,
            "of": wanted,
            "delivery_id": again.delivery_id,
        }
        record(session, "webhook_redeliver", detail, actor=who(), ticket_id=delivery.ticket_id)
        new_id = again.delivery_id
    print(f"queued {new_id} (the body of {wanted}); maild serve sends it")
    return 0
