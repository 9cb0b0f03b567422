"""The JSON API (issue 19) against the real `maild serve` over loopback HTTP: each endpoint answers what
the same `maildctl` command shows (`ticket list|show|log --json`), each change goes through the same
services (in `ticket log` with the actor `api:<token name>`), and a token's use is in `api-token list`.
Its errors: tests/test_api_errors.py; its tokens and document: tests/test_api_tokens.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maild.config import load_config
from maild.storage.models import OutboxMessage
from tests.api_client import Api, api_config, new_token
from tests.cli import ctl, ok
from tests.daemon import Factory, Serve, start_fixture, wait_until  # noqa: F401 (the fixture `start`)
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk
from tests.web_browser import web_port_fixture  # noqa: F401 (the fixture web_port)

BOB, CAROL = "bob.agent@example.com", "carol.agent@example.com"


def cli_json(config: Path, *args: str) -> Any:
    return json.loads(ok(ctl(config, *args, "--json")))


def _reply_sent(factory: Factory) -> bool:
    """Whether the agent's reply went out (the outbox job runs every 30 s: this is the API's own send)."""
    with factory() as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "agent_reply")).first()
        return row is not None and row.status == "sent"


def two_tickets(factory: Factory, config: Path) -> tuple[str, str]:
    """Two tickets of desk support (the newest first, as lists show them), agents Bob and Carol."""
    cfg = load_config(str(config))
    make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(factory, BOB, "Bob Builder", ["support"])
    make_agent(factory, CAROL, "Carol Agent", ["support"])
    deliver(factory, cfg, mail(subject="Printer on fire", message_id="<one@customer.example>"))
    deliver(
        factory,
        cfg,
        mail(sender="Dan <dan@other.example>", subject="Invoice wrong", message_id="<two@other.example>"),
    )
    rows = cli_json(config, "ticket", "list")
    return rows[0]["number"], rows[1]["number"]


def test_reads_and_changes_mirror_maildctl(
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    web_port: int,
    session_factory: Factory,
    start: Callable[[Path], Serve],
) -> None:
    config = api_config(tmp_path, data_dir, database_url, web_port, per_minute=100)
    invoice, printer = two_tickets(session_factory, config)
    reader = Api(web_port, new_token(config, "dashboard", "read"))
    writer = Api(web_port, new_token(config, "robot", "write"))
    start(config)
    _reads(config, reader, invoice, printer)
    _changes(session_factory, writer, printer)
    _what_the_changes_left(config, reader, printer)
    _opens_a_ticket(config, reader, writer)
    used = {t["name"]: t for t in cli_json(config, "api-token", "list")}
    assert used["robot"]["last_used_at"] is not None and used["dashboard"]["last_used_at"] is not None


def _reads(config: Path, reader: Api, invoice: str, printer: str) -> None:
    """The JSON of maildctl, the filters as query parameters."""
    listed = reader.get("/api/v1/tickets")
    assert listed.status == 200 and listed.body == cli_json(config, "ticket", "list")
    assert [t["number"] for t in listed.body] == [invoice, printer]
    only = reader.get("/api/v1/tickets?customer=dan@other.example&status=open&desk=support&limit=5").body
    assert only == cli_json(config, "ticket", "list", "--customer", "dan@other.example", "--status", "open")
    assert [t["number"] for t in reader.get("/api/v1/tickets?limit=1").body] == [invoice]
    shown = reader.get(f"/api/v1/tickets/{printer}")
    assert shown.status == 200 and shown.body == cli_json(config, "ticket", "show", printer)


def _changes(session_factory: Factory, writer: Api, printer: str) -> None:
    """Each change answered like a row of `ticket bulk --json`."""
    base = f"/api/v1/tickets/{printer}"
    status = writer.post(f"{base}/status", {"status": "On Hold"})
    assert status.status == 200, status.body
    assert status.body == {
        "ticket": printer,
        "action": "status",
        "before": "open",
        "after": "on_hold",
        "changed": True,
    }
    assert writer.post(f"{base}/status", {"status": "on_hold"}).body["changed"] is False
    assert writer.post(f"{base}/priority", {"priority": "HIGH"}).body["after"] == "high"
    assigned = writer.post(f"{base}/assign", {"agent": "Bob Builder"}).body
    assert (assigned["before"], assigned["after"], assigned["notice_queued"]) == ("", BOB, True)
    assert writer.post(f"{base}/assign", {"agent": CAROL}).body["before"] == BOB
    assert writer.post(f"{base}/tags", {"tag": "VIP"}).body == {
        "ticket": printer,
        "action": "tag",
        "before": "",
        "after": "vip",
        "changed": True,
    }
    assert writer.post(f"{base}/tags", {"tag": "later"}).status == 200
    assert writer.call("DELETE", f"{base}/tags/later").body["action"] == "untag"
    note = writer.post(f"{base}/notes", {"text": "  INTERNAL: on the old contract\r\n"}).body
    assert note["action"] == "note" and isinstance(note["note_id"], int)
    replied = writer.post(f"{base}/reply", {"text": "We are on it, Alice.", "as": BOB}).body
    assert replied["sent_to"] == ["alice@customer.example"] and replied["status"] == "waiting"
    wait_until(lambda: _reply_sent(session_factory), timeout=10, what="the reply sent at once")
    assert writer.post(f"{base}/assign", {"agent": None}).body["after"] == ""


def _what_the_changes_left(config: Path, reader: Api, printer: str) -> None:
    """The same ticket for maildctl, each change in its log as api:robot."""
    base = f"/api/v1/tickets/{printer}"
    after = reader.get(base).body
    assert after == cli_json(config, "ticket", "show", printer)
    assert (after["status"], after["priority"], after["tags"], after["assigned_agent"]) == (
        "waiting",
        "high",
        ["vip"],
        None,
    )
    assert [m["kind"] for m in after["messages"]][-2:] == ["note", "agent"]
    assert after["messages"][-2]["text"] == "INTERNAL: on the old contract"
    log = cli_json(config, "ticket", "log", printer)
    assert reader.get(f"{base}/log").body == log
    by_api = [(e["action"], e["before"], e["after"]) for e in log if e["actor"] == "api:robot"]
    assert by_api == [
        ("status", "open", "on_hold"),
        ("priority", "normal", "high"),
        ("assign", None, BOB),
        ("assign", BOB, CAROL),
        ("tag", None, "vip"),
        ("tag", None, "later"),
        ("untag", "later", None),
        ("note", None, None),
        ("status", "on_hold", "waiting"),  # the reply's
        ("reply", None, None),
        ("assign", CAROL, None),
    ]
    assert [t["number"] for t in reader.get("/api/v1/tickets?tag=vip").body] == [printer]


def _opens_a_ticket(config: Path, reader: Api, writer: Api) -> None:
    """POST /api/v1/tickets: `maildctl ticket open`'s service; the answer is the new ticket's show JSON."""
    wanted = {
        "desk": "support",
        "to": "erin@shop.example",
        "cc": ["frank@shop.example"],
        "subject": "Your replacement part",
        "text": "Hello Erin,\n\nthe part ships today.",
        "as": BOB,
    }
    opened = writer.post("/api/v1/tickets", wanted)
    assert opened.status == 201, opened.body
    number = opened.body["number"]
    assert opened.body == cli_json(config, "ticket", "show", number)
    assert (opened.body["customer"], opened.body["status"]) == ("erin@shop.example", "waiting")
    assert [m["kind"] for m in opened.body["messages"]] == ["agent"]
    log = cli_json(config, "ticket", "log", number)
    assert ("ticket_opened", "api:robot") in [(e["action"], e["actor"]) for e in log]
    assert reader.post("/api/v1/tickets", wanted).status == 403
    assert writer.post("/api/v1/tickets", {**wanted, "to": SUPPORT}).status == 422
    assert writer.post("/api/v1/tickets", {**wanted, "desk": "nosuch"}).status == 422
    assert writer.post("/api/v1/tickets", {**wanted, "cc": "frank@shop.example"}).status == 400
    assert writer.post("/api/v1/tickets", {**wanted, "text": "  "}).status == 422
    missing = {k: v for k, v in wanted.items() if k != "subject"}
    assert writer.post("/api/v1/tickets", missing).status == 400
