"""Outgoing webhooks (issue 19): queued from the ticket events of the pipeline and maildctl, POSTed signed
to a real HTTP server on loopback, retried with backoff when it is down, slow or answers 500, failed
after `[webhooks] max_attempts`, sent again by `maildctl webhook redeliver`."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.outbound import sender
from maild.outbound.sender import flush
from maild.outbound.webhook_sender import SendResult, claim, send_due_now
from maild.storage.db import make_engine, make_sessionmaker, transaction
from maild.storage.events import TicketEvent
from maild.storage.models import AuditLog, Ticket, WebhookDelivery, utcnow
from maild.tickets.webhook_queue import _active as active_webhooks
from maild.tickets.webhook_queue import queue_to_webhook
from tests.cli import ctl, ok
from tests.conftest import run_cli
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, deliver, mail, make_desk
from tests.webhook_receiver import Receiver, receiver, refused_url

__all__ = ["receiver"]  # the fixture

SECRET = "s3cret-for-tests"


@pytest.fixture
def hooked(config_file: Path) -> Path:
    """The test config with small timeouts, and a desk."""
    with config_file.open("a") as fh:
        fh.write("\n[webhooks]\ntimeout = 0.5\nmax_attempts = 3\npoll_seconds = 0.2\n")
    return config_file


@pytest.fixture
def hcfg(hooked: Path) -> Config:
    return load_config(str(hooked))


@pytest.fixture
def factory(hcfg: Config) -> Any:
    engine = make_engine(hcfg.database_url, hcfg.busy_timeout_ms)
    factory = make_sessionmaker(engine)
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    yield factory
    engine.dispose()


def add_webhook(config: Path, name: str, url: str, *options: str) -> None:
    done = run_cli("maildctl", "webhook", "add", name, url, "--secret", SECRET, *options, config=config)
    assert done.returncode == 0, done.stderr


def deliveries(factory: sessionmaker[Session]) -> list[WebhookDelivery]:
    with factory() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_a_new_ticket_arrives_signed(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session], receiver: Receiver
) -> None:
    add_webhook(hooked, "crm", receiver.url, "--events", "ticket.created,message.received")
    result = deliver(factory, hcfg, mail(), SUPPORT)
    assert send_due_now(factory, hcfg) == SendResult(delivered=2)
    created, received = receiver.wait_for(2)
    for request in (created, received):
        assert request.signed_with(SECRET)
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("maild/")
        assert request.headers["X-Maild-Delivery"] == request.json["delivery"]
    assert not created.signed_with("another secret")
    assert created.headers["X-Maild-Event"] == "ticket.created"
    body = created.json
    assert body["event"] == "ticket.created"
    assert body["occurred_at"] == NOW.replace(tzinfo=None).isoformat() + "Z"
    assert body["ticket"] == {
        "number": result.ticket_number,
        "desk": "support",
        "subject": "Printer on fire",
        "status": "open",
        "priority": "normal",
        "customer": "alice@customer.example",
        "assigned_agent": None,
        "tags": [],
        "created_at": body["ticket"]["created_at"],
        "updated_at": body["ticket"]["updated_at"],
    }
    message = received.json["message"]
    assert (message["kind"], message["from"]) == ("customer", "alice@customer.example")
    assert "on fire" in message["text"]
    [one, two] = deliveries(factory)
    assert (one.state, one.attempts, one.last_status, two.state) == ("delivered", 1, 200, "delivered")
    assert one.body == created.body  # the stored bytes are the bytes sent


def test_events_a_webhook_is_not_subscribed_to_are_not_sent(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session], receiver: Receiver
) -> None:
    make_desk(factory, "sales", ["sales@example.com"], "S-{{nr}}")
    add_webhook(hooked, "statuses", receiver.url, "--events", "status.changed", "--desk", "support")
    add_webhook(hooked, "sales-only", receiver.url, "--desk", "sales")
    result = deliver(factory, hcfg, mail(), SUPPORT)
    assert deliveries(factory) == []  # neither is subscribed to a new support ticket
    assert (
        run_cli("maildctl", "ticket", "status", result.ticket_number, "waiting", config=hooked).returncode
        == 0
    )
    [queued] = deliveries(factory)
    assert queued.event == "status.changed"
    send_due_now(factory, hcfg)
    [request] = receiver.wait_for(1)
    assert (request.json["before"], request.json["after"]) == ("open", "waiting")
    assert request.json["ticket"]["status"] == "waiting"


def test_a_server_that_is_down_is_retried_later(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session]
) -> None:
    add_webhook(hooked, "down", refused_url(), "--events", "ticket.created")
    deliver(factory, hcfg, mail(), SUPPORT)
    before = utcnow()
    assert send_due_now(factory, hcfg) == SendResult(retried=1)
    [row] = deliveries(factory)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, None)
    assert "Connect" in row.last_error
    assert row.next_attempt_at - before >= dt.timedelta(seconds=59)  # the first backoff: a minute
    assert send_due_now(factory, hcfg) == SendResult()  # not due again yet


def test_a_slow_server_times_out(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.delay = 2.0
    add_webhook(hooked, "slow", receiver.url, "--events", "ticket.created")
    deliver(factory, hcfg, mail(), SUPPORT)
    assert send_due_now(factory, hcfg) == SendResult(retried=1)
    [row] = deliveries(factory)
    assert row.last_error == "no answer within 0.5 s"


def test_500_then_200_is_retried_and_delivered_with_the_same_bytes(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.statuses = [500]
    add_webhook(hooked, "flaky", receiver.url, "--events", "ticket.created")
    deliver(factory, hcfg, mail(), SUPPORT)
    assert send_due_now(factory, hcfg) == SendResult(retried=1)
    [row] = deliveries(factory)
    assert (row.attempts, row.last_status, row.last_error) == (1, 500, "HTTP 500 Internal Server Error")
    later = utcnow() + dt.timedelta(minutes=2)
    assert send_due_now(factory, hcfg, later) == SendResult(delivered=1)
    first, second = receiver.wait_for(2)
    assert (
        first.body == second.body and first.headers["X-Maild-Delivery"] == second.headers["X-Maild-Delivery"]
    )
    [row] = deliveries(factory)
    assert (row.state, row.attempts, row.last_status, row.delivered_at) == ("delivered", 2, 200, later)


def test_failed_after_the_limit_then_redelivered(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.statuses = [503, 503, 503]
    add_webhook(hooked, "broken", receiver.url, "--events", "ticket.created")
    deliver(factory, hcfg, mail(), SUPPORT)
    at = utcnow()
    for _attempt in range(3):  # max_attempts = 3
        at += dt.timedelta(days=1)
        send_due_now(factory, hcfg, at)
    [row] = deliveries(factory)
    assert (row.state, row.attempts) == ("failed", 3)
    assert send_due_now(factory, hcfg, at + dt.timedelta(days=9)) == SendResult()
    listed = run_cli("maildctl", "webhook", "deliveries", "broken", "--state", "failed", config=hooked)
    assert row.delivery_id in listed.stdout
    shown = json.loads(
        run_cli("maildctl", "webhook", "show", row.delivery_id, "--json", config=hooked).stdout
    )
    assert (shown["state"], shown["attempts"], shown["last_status"]) == ("failed", 3, 503)
    assert shown["body"] == json.loads(row.body) and shown["url"] == receiver.url

    again = run_cli("maildctl", "webhook", "redeliver", row.delivery_id, config=hooked)
    assert again.returncode == 0, again.stderr
    assert send_due_now(factory, hcfg) == SendResult(delivered=1)
    requests = receiver.wait_for(4)
    assert requests[3].body == requests[0].body and requests[3].signed_with(SECRET)
    assert requests[3].headers["X-Maild-Delivery"] != row.delivery_id  # a delivery of its own
    old, new = deliveries(factory)
    assert (old.state, new.state, new.attempts) == ("failed", "delivered", 1)
    with factory() as session:
        actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions.count("webhook_add") == 1 and "webhook_redeliver" in actions


def test_message_sent_when_the_outbox_hands_the_auto_reply_over(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session], receiver: Receiver
) -> None:
    add_webhook(hooked, "sent", receiver.url, "--events", "message.sent")
    result = deliver(factory, hcfg, mail(), SUPPORT)
    assert deliveries(factory) == []
    flush(factory, hcfg, result.outbox_ids)
    queued = deliveries(factory)
    assert queued and {d.event for d in queued} == {"message.sent"}
    send_due_now(factory, hcfg)
    bodies = [r.json for r in receiver.wait_for(len(queued))]
    customer = [b for b in bodies if b["message"]["to"] == ["alice@customer.example"]]
    assert customer and customer[0]["ticket"]["number"] == result.ticket_number
    assert customer[0]["message"]["template"] and customer[0]["message"]["message_id"]
    assert customer[0]["message"]["to_agents"] is False


def test_queue_to_webhook_names_one_whatever_it_is_subscribed_to(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session]
) -> None:
    add_webhook(hooked, "named", refused_url(), "--events", "rating.received")
    result = deliver(factory, hcfg, mail(), SUPPORT)
    with transaction(factory) as session:
        ticket = session.scalars(select(Ticket).where(Ticket.number == result.ticket_number)).one()
        queue_to_webhook(session, "named", TicketEvent("ticket.created", ticket.id, ticket.desk_id), NOW)
        with pytest.raises(LookupError, match="no webhook 'nope'"):
            queue_to_webhook(session, "nope", TicketEvent("ticket.created", ticket.id, ticket.desk_id), NOW)
    [row] = deliveries(factory)
    assert row.event == "ticket.created"


def test_with_no_webhook_a_mail_costs_one_small_query(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session]
) -> None:
    seen: list[str] = []
    engine = factory.kw["bind"]

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "webhook" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    deliver(factory, hcfg, mail(), SUPPORT)
    event.remove(engine, "before_cursor_execute", count)
    assert len(seen) == 1 and seen[0].lstrip().startswith("SELECT")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "x", "ftp://example.com/h"], "must be http:// or https://"),
        (["add", "x", "http://example.com/h", "--events", "ticket.created,ticket.nope"], "unknown event"),
        (["add", "x", "http://example.com/h", "--desk", "nope"], "no desk named 'nope'"),
        (["add", "has space", "http://example.com/h"], "without spaces"),
        (["add", "x", "http://example.com/h", "--secret", ""], "--secret"),
        (["add", "taken", "http://example.com/h"], "exists already"),
        (["remove", "nope"], "no webhook 'nope'"),
        (["deliveries", "nope"], "no webhook 'nope'"),
        (["deliveries", "--state", "sent"], "unknown --state"),
        (["deliveries", "--limit", "0"], "--limit"),
        (["redeliver", "0000"], "no delivery '0000'"),
        (["show", "0000"], "no delivery '0000'"),
    ],
)
def test_cli_errors_are_one_line(hooked: Path, args: list[str], error: str) -> None:
    add_webhook(hooked, "taken", "http://example.com/h")
    done = run_cli("maildctl", "webhook", *args, config=hooked)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert error in line and done.stdout == ""


def test_cli_add_list_remove(hooked: Path) -> None:
    added = run_cli("maildctl", "webhook", "add", "crm", "https://crm.example/h", config=hooked)
    assert "all events, every desk" in added.stdout
    secret = added.stdout.split(": ")[-1].strip()
    assert len(secret) == 64  # generated, printed once
    listed = run_cli("maildctl", "webhook", "list", "--json", config=hooked)
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["all_events"], row["desk"]) == ("crm", True, None)
    assert secret not in listed.stdout
    assert run_cli("maildctl", "webhook", "remove", "crm", config=hooked).returncode == 0
    assert json.loads(run_cli("maildctl", "webhook", "list", "--json", config=hooked).stdout) == []


def test_two_senders_never_claim_one_delivery(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session]
) -> None:
    add_webhook(hooked, "busy", refused_url(), "--events", "rating.received")
    result = deliver(factory, hcfg, mail(), SUPPORT)
    with transaction(factory) as session:
        ticket = session.scalars(select(Ticket).where(Ticket.number == result.ticket_number)).one()
        for _ in range(30):
            queue_to_webhook(session, "busy", TicketEvent("ticket.created", ticket.id, ticket.desk_id), NOW)
    now = utcnow()
    with ThreadPoolExecutor(2) as pool:
        batches = list(pool.map(lambda _: claim(factory, hcfg, now), range(3)))
    ids = [c.id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 30  # 20 + 10 + 0, or as the threads met: never one twice
    assert claim(factory, hcfg, now + dt.timedelta(seconds=30)) == []  # leased beyond one timeout
    assert len(claim(factory, hcfg, now + dt.timedelta(minutes=2))) == 20  # the lease ended: due again


def test_a_failing_announcement_never_unsends_a_mail(
    hooked: Path, hcfg: Config, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_webhook(hooked, "sent", refused_url(), "--events", "message.sent")
    result = deliver(factory, hcfg, mail(), SUPPORT)

    def broken(*_args: object) -> None:
        raise RuntimeError("a rule went wrong")

    monkeypatch.setattr(sender, "_after_changes", broken)
    assert flush(factory, hcfg, result.outbox_ids).sent == len(result.outbox_ids)
    assert deliveries(factory) == []  # the announcement's savepoint rolled back, the mail's record stayed


def test_the_webhooks_are_read_once_per_transaction(hooked: Path, factory: sessionmaker[Session]) -> None:
    with factory() as session:
        assert active_webhooks(session) == []  # called before the session began: the query begins one
        session.commit()
        add_webhook(hooked, "later", "http://example.com/h")
        seen: list[str] = []
        event.listen(factory.kw["bind"], "before_cursor_execute", lambda *a: seen.append(a[2]))
        assert len(active_webhooks(session)) == 1  # a new transaction reads again
        assert len(active_webhooks(session)) == 1
        assert len([s for s in seen if "webhooks" in s]) == 1  # once in the transaction


def test_no_command_shows_a_urls_password(hooked: Path) -> None:
    added = ok(ctl(hooked, "webhook", "add", "crm", "https://robot:s3cret@crm.example/hook", "--secret", "x"))
    listed = ok(ctl(hooked, "webhook", "list", "--json")) + ok(ctl(hooked, "webhook", "list"))
    audit = ok(ctl(hooked, "audit", "--json"))
    assert "robot:***@crm.example" in added and "robot:***@crm.example" in listed
    assert "s3cret" not in added + listed + audit
