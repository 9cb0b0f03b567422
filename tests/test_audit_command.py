"""maildctl audit: every audited change (settings and tickets alike) newest first, its filters, --json as
`ticket log --json` plus fields, --limit, one-line errors; and that the known action names cover every
action the code writes."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.storage.db import transaction
from maild.storage.models import AuditLog
from maild.tickets.audit_view import KNOWN_ACTIONS, redacted_url
from tests.cli import ctl, ok, one_line_error
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk

Factory = sessionmaker[Session]
ANNA = "anna@example.com"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def changes(session_factory: Factory, cfg: Config, config_file: Path) -> str:
    """A ticket (created by mail, its status changed by maildctl), then a desk set, an agent away, a rule
    and a webhook added; the ticket's number."""
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_desk(session_factory, "sales", ["sales@example.com"], "SALES-{{nr}}")
    make_agent(session_factory, ANNA, "Anna", ["support"])
    number = deliver(session_factory, cfg, mail()).ticket_number
    assert number is not None
    ok(ctl(config_file, "ticket", "status", number, "waiting"))
    ok(ctl(config_file, "desk", "set", "support", "--sender-name", "ACME Support"))
    ok(ctl(config_file, "agent", "away", ANNA))
    ok(ctl(config_file, "rule", "add", "sales", "vip", "--on", "ticket created", "--then", "tag vip"))
    url = "https://hook:s3cret-pw@crm.example/h"
    ok(ctl(config_file, "webhook", "add", "crm", url, "--desk", "sales", "--secret", "hmac-secret-1"))
    return number


def audit(config_file: Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok(ctl(config_file, "audit", "--json", *args)))
    return rows


def actions(config_file: Path, *args: str) -> list[str]:
    return [row["action"] for row in audit(config_file, *args)]


def test_every_kind_of_change_is_listed_newest_first(changes: str, config_file: Path) -> None:
    rows = audit(config_file)
    assert [r["action"] for r in rows] == [
        "webhook_add",
        "rule_add",
        "agent_away",
        "desk_set",
        "status",
        "ticket_created",  # by mail at the helpers' fixed time, months before the commands
    ]
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    by_action = {r["action"]: r for r in rows}
    assert by_action["status"]["ticket"] == changes and by_action["status"]["desk"] == "support"
    assert (by_action["status"]["before"], by_action["status"]["after"]) == ("open", "waiting")
    assert by_action["agent_away"]["ticket"] is None and by_action["agent_away"]["desk"] is None
    assert by_action["agent_away"]["detail"]["agent"] == ANNA
    assert by_action["rule_add"]["desk"] == "sales" and by_action["rule_add"]["detail"]["name"] == "vip"
    text = ok(ctl(config_file, "audit")).splitlines()
    assert len(text) == len(rows)
    assert " status [" + changes + "]  open -> waiting" in text[4]
    assert "webhook_add" in text[0] and "name=crm" in text[0]


def test_secrets_are_never_in_the_log(changes: str, config_file: Path, session_factory: Factory) -> None:
    shown = ok(ctl(config_file, "audit", "--json")) + ok(ctl(config_file, "audit"))
    assert "s3cret-pw" not in shown and "hmac-secret-1" not in shown
    assert "https://hook:***@crm.example/h" in shown
    with session_factory() as s:  # the writer: the stored row has no password either
        stored = json.dumps([r.detail for r in s.scalars(select(AuditLog))])
    assert "s3cret-pw" not in stored and "hmac-secret-1" not in stored
    # A row written before the writer redacted URLs is redacted when shown.
    with transaction(session_factory) as s:
        s.add(AuditLog(actor="old", action="webhook_add", detail={"url": "http://u:old-pw@h.example/x"}))
    assert "old-pw" not in ok(ctl(config_file, "audit", "--actor", "old"))
    assert redacted_url("https://crm.example/h?x=1") == "https://crm.example/h?x=1"


def test_each_filter(changes: str, config_file: Path) -> None:
    assert actions(config_file, "--action", "rule_add", "--action", "status") == ["rule_add", "status"]
    assert actions(config_file, "--action", "rule_add,status") == ["rule_add", "status"]
    assert actions(config_file, "--actor", "rule:none") == []
    assert actions(config_file, "--actor", "Alice@Customer.example") == ["ticket_created"]
    assert actions(config_file, "--ticket", changes.lower()) == ["status", "ticket_created"]
    # support: its ticket's rows and its own setting; sales: the rule and the webhook of that desk.
    assert actions(config_file, "--desk", "support") == ["desk_set", "status", "ticket_created"]
    assert actions(config_file, "--desk", "sales") == ["webhook_add", "rule_add"]
    assert actions(config_file, "--since", "1h") == [
        "webhook_add",
        "rule_add",
        "agent_away",
        "desk_set",
        "status",
    ]
    assert "ticket_created" in actions(config_file, "--since", "2026-03-07")
    assert actions(config_file, "--since", "2026-03-08T00:00:00+01:00", "--action", "ticket_created") == []
    assert actions(config_file, "--since", "2099-01-01") == []


def test_limit_and_order(changes: str, config_file: Path) -> None:
    everything = actions(config_file, "--limit", "0")
    assert len(everything) == 6
    assert actions(config_file, "--limit", "2") == everything[:2]
    assert actions(config_file, "--limit", "2", "--desk", "support") == ["desk_set", "status"]


def test_json_of_a_ticket_row_is_ticket_logs_plus_fields(changes: str, config_file: Path) -> None:
    logged = json.loads(ok(ctl(config_file, "ticket", "log", changes, "--json")))
    listed = audit(config_file, "--ticket", changes)
    assert list(reversed(listed)) != [] and len(listed) == len(logged)
    for in_log, in_audit in zip(logged, reversed(listed), strict=True):
        assert {k: v for k, v in in_audit.items() if k not in ("id", "desk")} == in_log
        assert list(in_audit) == ["id", *in_log, "desk"]


def test_a_deleted_ticket_is_found_by_its_delete_row(changes: str, config_file: Path) -> None:
    ok(ctl(config_file, "ticket", "delete", changes))
    rows = audit(config_file, "--ticket", changes)
    assert [r["action"] for r in rows] == ["ticket_delete"]
    assert rows[0]["desk"] == "support" and rows[0]["detail"]["number"] == changes


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--action", "rule-add"], "unknown --action 'rule-add': use ticket_created,"),
        (["--ticket", "NOPE-1"], "no ticket 'NOPE-1'"),
        (["--desk", "nosuchdesk"], "no desk named 'nosuchdesk'"),
        (["--since", "yesterday"], "invalid --since 'yesterday'"),
        (["--since", "5y"], "invalid --since '5y'"),
        (["--limit", "-1"], "invalid --limit -1"),
        (["--actor", " "], "--actor is empty"),
        (["--action", ","], "--action is empty"),
    ],
)
def test_wrong_input_is_one_line(changes: str, config_file: Path, args: list[str], says: str) -> None:
    line = one_line_error(ctl(config_file, "audit", *args))
    assert says in line, line


def test_an_action_only_an_older_version_wrote_is_accepted(
    changes: str, config_file: Path, session_factory: Factory
) -> None:
    with transaction(session_factory) as s:
        s.add(AuditLog(actor="maild", action="legacy_thing", detail={}))
    assert actions(config_file, "--action", "legacy_thing") == ["legacy_thing"]
    assert "legacy_thing" in one_line_error(ctl(config_file, "audit", "--action", "nope"))


# --- the known actions are the code's ---------------------------------------------------------------------

# Writers and the position of their action argument; AuditLog(action=…) and delete_tickets(action=…) too.
WRITERS = {"audit": 2, "record": 1, "audit_desk_change": 1, "_audit": 1}
# Actions the scan cannot see as a literal argument: pipeline/apply.py picks one into a variable, and
# ticket_ops.delete_tickets' default.
DYNAMIC = {"ticket_created", "message_added", "desk_reply", "agent_reply", "agent_note", "ticket_delete"}


def _literal_actions() -> set[str]:
    found: set[str] = set()
    for folder in ("maild/tickets", "maild/ingress", "maild/outbound", "pipeline", "admin_cli"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                values = [node.args[WRITERS[name]]] if len(node.args) > WRITERS.get(name, 99) else []
                if name in (*WRITERS, "AuditLog", "delete_tickets"):  # argparse's add_argument(action=…)
                    values += [kw.value for kw in node.keywords if kw.arg == "action"]
                found |= {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
    return found


def test_the_known_actions_are_every_action_the_code_writes() -> None:
    written = _literal_actions()
    assert "webhook_add" in written and "agent_away" in written  # the scan sees the writers
    assert written - set(KNOWN_ACTIONS) == set()
    assert DYNAMIC - set(KNOWN_ACTIONS) == set()
    assert len(set(KNOWN_ACTIONS)) == len(KNOWN_ACTIONS)
    source = (ROOT / "pipeline" / "apply.py").read_text()
    assert all(f'"{name}"' in source for name in DYNAMIC - {"ticket_delete"})


def test_agent_add_and_set_are_audited(changes: str, config_file: Path) -> None:
    ok(ctl(config_file, "agent", "add", "bob@example.com", "--name", "Bob", "--desk", "sales"))
    ok(ctl(config_file, "agent", "set", "bob@example.com", "--inactive"))
    ok(ctl(config_file, "agent", "add", "bob@example.com", "--name", "Bob", "--desk", "sales", "--update"))
    rows = audit(config_file, "--action", "agent_add", "--action", "agent_set")
    assert [(r["action"], r["detail"]) for r in rows] == [
        ("agent_set", {"agent": "bob@example.com", "changes": ["inactive"]}),
        ("agent_add", {"agent": "bob@example.com", "name": "Bob", "desks": ["sales"]}),
    ]  # the --update that changed nothing left no row
