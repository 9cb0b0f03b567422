"""maildctl contact add|list, and what registering a contact means for a clients_only desk. (contact
unbounce, which needs a bounce first, is tested in tests/test_bounces.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from tests.conftest import run_cli
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail


def ctl(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli("maildctl", *args, config=config_file)
    assert "Traceback" not in proc.stderr
    return proc


def test_a_registered_contact_may_open_tickets_on_a_clients_only_desk(
    config_file: Path, cfg: Config, session_factory: sessionmaker[Session]
) -> None:
    assert (
        ctl(config_file, "desk", "add", "support", "--address", SUPPORT, "--pattern", SUP_PATTERN).returncode
        == 0
    )
    assert ctl(config_file, "desk", "set", "support", "--clients-only").returncode == 0
    stranger = deliver(session_factory, cfg, mail(), SUPPORT)
    assert stranger.outcome == "refused"

    added = ctl(config_file, "contact", "add", "Alice@Customer.example", "--name", "Alice A.")
    assert (added.returncode, added.stdout.strip()) == (0, "contact alice@customer.example added")
    known = deliver(session_factory, cfg, mail(message_id="<again@customer.example>"), SUPPORT)
    assert known.outcome == "created"

    listed = json.loads(
        run_cli("maildctl", "contact", "list", "--json", config=config_file, subprocess=True).stdout
    )
    assert [(c["email"], c["name"], c["status"], c["status_reason"], c["tickets"]) for c in listed] == [
        ("alice@customer.example", "Alice A.", "active", "", 1)
    ]
    table = ctl(config_file, "contact", "list").stdout.splitlines()
    assert table[0].split() == ["EMAIL", "NAME", "STATUS", "TICKETS", "REASON"]
    assert "alice@customer.example" in table[1]
    again = ctl(config_file, "contact", "add", "alice@customer.example")
    assert (again.returncode, again.stdout.strip()) == (0, "contact alice@customer.example updated")


def test_contact_add_refuses_bad_addresses_desks_and_agents(config_file: Path) -> None:
    ctl(config_file, "desk", "add", "support", "--address", SUPPORT, "--pattern", SUP_PATTERN)
    ctl(config_file, "agent", "add", "bob@example.com", "--name", "Bob", "--desk", "support")
    for address, complaint in (
        ("not-an-address", "invalid address 'not-an-address'"),
        (SUPPORT, f"{SUPPORT} is a desk address"),
        ("support+abc@example.com", "is a desk address"),
        ("bob@example.com", "bob@example.com is an agent"),
    ):
        proc = ctl(config_file, "contact", "add", address)
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1 and complaint in proc.stderr
