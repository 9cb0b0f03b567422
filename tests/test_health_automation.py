"""Automation where admins look (issue 19): `maildctl health` reports the webhook queue (overdue, failed),
desks with nobody present and broken rules; `maildctl webhook set` changes a webhook (an inactive one is
queued nothing); `maild serve`'s webhook sender releases a killed instance's claims at start."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

import maild.admin_cli.health
from maild.admin_cli.main import main
from maild.config import Config
from maild.outbound.webhook_sender import release_dead_claims
from maild.storage.db import transaction
from maild.storage.models import Agent, AuditLog, Category, Desk, Rule, Webhook, WebhookDelivery, utcnow
from tests.cli import ctl, ok
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk

Factory = sessionmaker[Session]
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def desk(session_factory: Factory) -> Factory:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    return session_factory


@pytest.fixture(autouse=True)
def running_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """health asks a daemon that answers, so that only what a test sets up is a problem."""
    status = {"status": "running", "pid": 4242, "version": "0", "uptime_seconds": 10, "listeners": []}
    monkeypatch.setattr(maild.admin_cli.health, "ask_status", lambda path: status)


def health(config_file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], list[str]]:
    """health's exit code, its JSON and its text (the same state, asked twice)."""
    code = main(["--config", str(config_file), "health", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert main(["--config", str(config_file), "health"]) == code
    return code, report, capsys.readouterr().out.splitlines()


def codes(report: dict[str, Any]) -> list[str]:
    return [p["code"] for p in report["problems"]]


def add_webhook(config_file: Path, name: str, *options: str) -> None:
    ok(ctl(config_file, "webhook", "add", name, HOOK, "--secret", "s3cret", *options))


def delivery(factory: Factory, webhook: str, state: str, **fields: Any) -> None:
    with transaction(factory) as session:
        webhook_id = session.scalar(select(Webhook.id).where(Webhook.name == webhook))
        defaults = {"attempts": 0, "next_attempt_at": utcnow(), "claimed_by": "", "last_error": ""}
        delivery_id = str(uuid.uuid4())
        session.add(
            WebhookDelivery(
                webhook_id=webhook_id,
                event="ticket.created",
                delivery_id=delivery_id,
                body=json.dumps({"delivery": delivery_id}).encode(),  # as sent: each body its own
                state=state,
                **(defaults | fields),
            )
        )


def test_failed_and_overdue_webhook_deliveries_need_an_admin(
    config_file: Path, desk: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    add_webhook(config_file, "crm")
    add_webhook(config_file, "erp")
    now = utcnow()
    delivery(desk, "crm", "pending")  # due now: the sender takes it at its next poll
    delivery(desk, "crm", "pending", next_attempt_at=now - dt.timedelta(hours=1), attempts=2)
    delivery(desk, "erp", "failed", last_attempt_at=now - dt.timedelta(hours=1), last_error="HTTP 500 Oops")
    delivery(desk, "erp", "failed", last_attempt_at=now - dt.timedelta(days=3), last_error="old")
    delivery(desk, "erp", "delivered", delivered_at=now)

    code, report, text = health(config_file, capsys)

    assert code == 1
    assert codes(report) == ["webhook_failed", "webhook_overdue"]
    hooks = report["webhooks"]
    assert {k: hooks[k] for k in ("pending", "overdue", "retrying", "failed_24h")} == {
        "pending": 2,
        "overdue": 1,
        "retrying": 1,
        "failed_24h": 1,
    }
    assert hooks["last_error"] == "HTTP 500 Oops" and hooks["oldest_overdue_at"] is not None
    assert hooks["by_webhook"] == [
        {"name": "crm", "active": True, "pending": 2, "overdue": 1, "retrying": 1, "failed_24h": 0},
        {"name": "erp", "active": True, "pending": 0, "overdue": 0, "retrying": 0, "failed_24h": 1},
    ]
    assert report["problems"][0]["message"] == (
        "1 webhook delivery failed for good in the last 24 h (erp: 1) (last error: HTTP 500 Oops): see "
        "'maildctl webhook deliveries --state failed', then 'maildctl webhook redeliver ID' once the "
        "receiver is fixed"
    )
    assert "1 webhook delivery overdue, the oldest due since" in report["problems"][1]["message"]
    assert "webhook sender is not running or is stuck" in report["problems"][1]["message"]
    assert text[0] == "maild needs an admin: 2 problems"
    assert "webhooks   2 pending (1 overdue, 1 retrying), 1 failed in 24 h" in text

    # The failure redelivered (the receiver fixed): no longer counted; the new delivery is pending.
    with desk() as session:
        failed = session.scalars(
            select(WebhookDelivery.delivery_id).where(WebhookDelivery.last_error == "HTTP 500 Oops")
        ).one()
    ok(ctl(config_file, "webhook", "redeliver", failed))
    code, report, _ = health(config_file, capsys)
    assert code == 1 and codes(report) == ["webhook_overdue"]
    assert (report["webhooks"]["failed_24h"], report["webhooks"]["pending"]) == (0, 3)

    # Sent at last: nothing left for an admin.
    with transaction(desk) as session:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.state == "pending").values(state="delivered")
        )
    code, report, text = health(config_file, capsys)
    assert code == 0, report["problems"]
    assert text[0] == "maild is healthy"
    assert "webhooks   0 pending (0 overdue, 0 retrying), 0 failed in 24 h" in text


def test_desks_where_nobody_is_present_are_said_but_need_no_admin(
    config_file: Path, desk: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    make_desk(desk, "billing", ["billing@example.com"], "BIL-{{nr}}")
    make_desk(desk, "sales", ["sales@example.com"], "SAL-{{nr}}")
    make_agent(desk, "bob@example.com", "Bob", ["support", "billing"])
    make_agent(desk, "carol@example.com", "Carol", ["support", "sales"])
    make_desk(desk, "empty", ["empty@example.com"], "EMP-{{nr}}")  # no agents: not about presence
    code, report, text = health(config_file, capsys)
    assert code == 0, report["problems"]
    assert report["presence"] == {"nobody_present": []}
    assert "presence   someone present on every desk with agents" in text

    now = utcnow()
    with transaction(desk) as session:
        session.execute(
            update(Desk).where(Desk.name == "support").values(when_nobody_present="desk-unavailable")
        )
        # Bob away for good, Carol away until yesterday (present again): only billing has nobody
        session.execute(update(Agent).where(Agent.email == "bob@example.com").values(away_since=now))
        session.execute(
            update(Agent)
            .where(Agent.email == "carol@example.com")
            .values(away_since=now - dt.timedelta(days=3), away_until=now - dt.timedelta(days=1))
        )
    code, report, text = health(config_file, capsys)
    assert code == 0, report["problems"]
    assert [d["desk"] for d in report["presence"]["nobody_present"]] == ["billing"]

    with transaction(desk) as session:
        session.execute(update(Agent).where(Agent.email == "carol@example.com").values(away_until=None))
    code, report, text = health(config_file, capsys)

    assert code == 0, report["problems"]
    assert report["presence"]["nobody_present"] == [
        {
            "desk": "billing",
            "agents_away": 1,
            "when_nobody_present": "notify-all",
            "customers_get_desk_unavailable": False,
        },
        {
            "desk": "sales",
            "agents_away": 1,
            "when_nobody_present": "notify-all",
            "customers_get_desk_unavailable": False,
        },
        {
            "desk": "support",
            "agents_away": 2,
            "when_nobody_present": "desk-unavailable",
            "customers_get_desk_unavailable": True,
        },
    ]
    assert (
        "presence   nobody present on billing (notify-all: every active agent is told anyway); sales "
        "(notify-all: every active agent is told anyway); support (desk-unavailable: customers get "
        "desk_unavailable, no agent is told)"
    ) in text


def stored_rule(
    factory: Factory, name: str, trigger: str, actions: list[str], *, active: bool = True
) -> None:
    """A rule as a row: what `rule add` accepted once, before the desk changed (or a newer maild wrote)."""
    with transaction(factory) as session:
        desk_id = session.scalar(select(Desk.id).where(Desk.name == "support"))
        position = len(session.scalars(select(Rule.id)).all()) + 1
        session.add(
            Rule(
                desk_id=desk_id,
                name=name,
                position=position,
                trigger=trigger,
                conditions=[],
                actions=actions,
                active=active,
            )
        )


def test_rules_that_no_longer_parse_or_name_what_is_gone_need_an_admin(
    config_file: Path, desk: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    make_agent(desk, "bob@example.com", "Bob", ["support"])
    add_webhook(config_file, "crm")
    ok(ctl(config_file, "category", "add", "support", "billing"))
    on = ["--on", "ticket created", "--then"]
    ok(ctl(config_file, "rule", "add", "support", "tell-crm", *on, "webhook crm"))
    ok(
        ctl(
            config_file,
            "rule",
            "add",
            "support",
            "to-billing",
            *on,
            "category billing",
            "assign bob@example.com",
        )
    )
    ok(ctl(config_file, "rule", "add", "support", "fine", *on, "tag seen"))
    stored_rule(desk, "from-the-future", "moon phase full", ["tag x"])
    stored_rule(desk, "no-template", "ticket created", ["send no_such_template"])
    stored_rule(desk, "off", "moon phase full", ["tag x"], active=False)  # does not run: not reported
    code, report, _ = health(config_file, capsys)
    assert code == 1 and codes(report) == ["rule_broken", "rule_broken"]

    ok(ctl(config_file, "webhook", "remove", "crm"))
    with transaction(desk) as session:
        session.execute(update(Agent).values(active=False))
        category = session.scalar(select(Category).where(Category.name == "billing"))
        session.delete(category)

    code, report, text = health(config_file, capsys)

    assert code == 1
    assert codes(report) == ["rule_broken"] * 4
    broken = {rule["name"]: rule["problems"] for rule in report["rules"]}
    assert sorted(broken) == ["from-the-future", "no-template", "tell-crm", "to-billing"]
    assert broken["tell-crm"] == ["no webhook 'crm' (see 'maildctl webhook list')"]
    assert broken["to-billing"] == [
        "desk support has no category 'billing' (see 'maildctl category list --desk support')",
        "no single active agent 'bob@example.com' on desk support (or use round-robin)",
    ]
    assert broken["no-template"] == ["no mail template 'no_such_template' (see 'maildctl template list')"]
    assert broken["from-the-future"][0].startswith("does not parse any more: ")
    messages = {p["message"].split(":")[0]: p["message"] for p in report["problems"]}
    assert messages["rule to-billing on desk support"].endswith(
        "(and 1 more: 'maildctl health --json'): fix it with 'maildctl rule set support to-billing …' or "
        "remove it ('maildctl rule remove support to-billing')"
    )
    assert "rules      4 broken rules" in text
    assert any(line.startswith("- rule tell-crm on desk support: no webhook 'crm'") for line in text)


def test_an_inactive_webhooks_rule_is_broken_until_it_is_active_again(
    config_file: Path, desk: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    add_webhook(config_file, "crm")
    ok(
        ctl(
            config_file,
            "rule",
            "add",
            "support",
            "tell-crm",
            "--on",
            "ticket created",
            "--then",
            "webhook crm",
        )
    )
    ok(ctl(config_file, "webhook", "set", "crm", "--inactive"))
    code, report, _ = health(config_file, capsys)
    assert code == 1
    assert report["rules"][0]["problems"] == [
        "webhook 'crm' is inactive ('maildctl webhook set crm --active')"
    ]
    ok(ctl(config_file, "webhook", "set", "crm", "--active"))
    code, report, text = health(config_file, capsys)
    assert code == 0, report["problems"]
    assert "rules      ok" in text


def webhook_row(factory: Factory, name: str) -> dict[str, Any]:
    with factory() as session:
        hook = session.scalars(select(Webhook).where(Webhook.name == name)).one()
        desk = session.get(Desk, hook.desk_id) if hook.desk_id else None
        return {
            "url": hook.url,
            "events": hook.events,
            "desk": desk.name if desk else None,
            "active": hook.active,
            "secret": hook.secret,
        }


def test_webhook_set_changes_what_is_given_and_audits_it_without_the_secret(
    config_file: Path, desk: Factory
) -> None:
    add_webhook(config_file, "crm")
    out = ok(
        ctl(
            config_file,
            "webhook",
            "set",
            "crm",
            "--url",
            "https://crm.example/h",
            "--events",
            "ticket.created,status.changed",
            "--desk",
            "support",
            "--inactive",
        )
    )
    assert out == (
        "webhook crm: https://crm.example/h (ticket.created, status.changed, support), inactive (no new "
        "deliveries)\n"
    )
    assert webhook_row(desk, "crm") == {
        "url": "https://crm.example/h",
        "events": ["ticket.created", "status.changed"],
        "desk": "support",
        "active": False,
        "secret": "s3cret",
    }
    listed = ok(ctl(config_file, "webhook", "list"))
    assert listed.splitlines()[0].split()[4] == "ACTIVE" and listed.splitlines()[1].split()[4] == "no"
    assert json.loads(ok(ctl(config_file, "webhook", "list", "--json")))[0]["active"] is False

    out = ok(ctl(config_file, "webhook", "set", "crm", "--all", "--all-desks", "--active", "--new-secret"))
    secret = out.splitlines()[1].split(": ")[-1]
    assert len(secret) == 64 and out.startswith(
        "webhook crm: https://crm.example/h (all events, every desk), active"
    )
    assert webhook_row(desk, "crm") | {"secret": ""} == {
        "url": "https://crm.example/h",
        "events": [],
        "desk": None,
        "active": True,
        "secret": "",
    }
    assert webhook_row(desk, "crm")["secret"] == secret
    ok(ctl(config_file, "webhook", "set", "crm", "--secret", "another"))
    assert webhook_row(desk, "crm")["secret"] == "another"

    with desk() as session:
        audits = list(
            session.scalars(select(AuditLog).where(AuditLog.action == "webhook_set").order_by(AuditLog.id))
        )
    assert [a.detail["secret_changed"] for a in audits] == [False, True, True]
    assert audits[0].detail["before"]["active"] is True and audits[0].detail["after"]["active"] is False
    assert audits[0].detail["after"]["desk"] == "support" and audits[0].actor
    dumped = json.dumps([a.detail for a in audits])
    assert secret not in dumped and "another" not in dumped and "s3cret" not in dumped


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["crm"], "nothing to change: give --url"),
        (["nope", "--inactive"], "no webhook 'nope'"),
        (["crm", "--url", "ftp://x"], "must be http:// or https://"),
        (["crm", "--events", "ticket.exploded"], "unknown event ticket.exploded"),
        (["crm", "--desk", "nodesk"], "nodesk"),
        (["crm", "--secret", " "], "--secret: give 1-200 characters"),
    ],
)
def test_webhook_set_errors_are_one_line(
    config_file: Path, desk: Factory, args: list[str], error: str
) -> None:
    add_webhook(config_file, "crm")
    done = ctl(config_file, "webhook", "set", *args)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert error in line
    assert webhook_row(desk, "crm")["url"] == HOOK


def test_an_inactive_webhook_is_queued_nothing(config_file: Path, cfg: Config, desk: Factory) -> None:
    add_webhook(config_file, "crm")
    ok(ctl(config_file, "webhook", "set", "crm", "--inactive"))
    deliver(desk, cfg, mail(message_id="<one@customer.example>", subject="First"))
    with desk() as session:
        assert session.scalars(select(WebhookDelivery)).all() == []

    ok(ctl(config_file, "webhook", "set", "crm", "--active"))
    deliver(desk, cfg, mail(message_id="<two@customer.example>", subject="Second"))
    with desk() as session:
        assert {d.event for d in session.scalars(select(WebhookDelivery))} >= {"ticket.created"}


def test_start_up_releases_the_claims_of_a_killed_sender(config_file: Path, desk: Factory) -> None:
    add_webhook(config_file, "crm")
    exited = subprocess.Popen(["true"])
    exited.wait()
    lease_end = utcnow() + dt.timedelta(minutes=5)
    dead, elsewhere = f"{socket.gethostname()} {exited.pid} 0-1", "other-host.test 1 0-1"
    delivery(desk, "crm", "pending", claimed_by=dead, next_attempt_at=lease_end)
    delivery(desk, "crm", "pending", claimed_by=elsewhere, next_attempt_at=lease_end)
    now = utcnow()

    assert release_dead_claims(desk, now) == 1

    with desk() as session:
        rows = {d.claimed_by: d.next_attempt_at for d in session.scalars(select(WebhookDelivery))}
    assert rows == {"": now, elsewhere: lease_end}  # another host's sender may still be posting
    assert release_dead_claims(desk, now) == 0
