"""maildctl agent add|set|list: display names, state and desks, and one-line refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.test_cli import (
    Ctl,
    as_json,
    ctl,  # noqa: F401  (fixture)
    ok,
    one_line_error,
    seed_desk,
)


def test_add_set_and_list(ctl: Ctl, session_factory: Any, config_file: Path) -> None:  # noqa: F811
    seed_desk(session_factory, "support", "SUP-{{nr}}", "support@example.com")
    seed_desk(session_factory, "sales", "SAL-{{nr}}", "sales@example.com")
    ok(
        ctl(
            "agent",
            "add",
            "anna@example.org",
            "--name",
            "Anna Berg",
            "--desk",
            "support",
            "--display-name",
            "Anna",
        )
    )
    ok(ctl("agent", "set", "anna@example.org", "--inactive", "--desk", "sales", "--name", "Anna B."))
    (anna,) = as_json(ctl("agent", "list", "--json"))
    assert anna == {
        "email": "anna@example.org",
        "name": "Anna B.",
        "display_name": "Anna",
        "active": False,
        "desks": ["sales"],
        "present": False,  # inactive: nobody's notices
        "away_since": None,
        "away_until": None,
    }
    ok(ctl("agent", "set", "ANNA@example.org", "--display-name", "", "--active"))
    (anna,) = as_json(ctl("agent", "list", "--json"))
    assert (anna["display_name"], anna["active"]) == ("", True)


def test_set_refusals(ctl: Ctl, session_factory: Any) -> None:  # noqa: F811
    seed_desk(session_factory, "support", "SUP-{{nr}}", "support@example.com")
    ok(ctl("agent", "add", "anna@example.org", "--name", "Anna", "--desk", "support"))

    def refused(*args: str) -> str:
        return one_line_error(ctl("agent", "set", *args))

    assert "no agent nobody@example.org" in one_line_error(
        ctl("agent", "set", "nobody@example.org", "--active")
    )
    assert "no desk named 'nope'" in refused("anna@example.org", "--desk", "nope")
    assert "nothing to change" in refused("anna@example.org")
    assert "--name must not be empty" in one_line_error(
        ctl("agent", "set", "anna@example.org", "--name", " ")
    )
