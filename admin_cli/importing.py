"""maildctl: (being written)."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    """Adds nothing yet."""


def register_ticket_commands(ticket_actions: Any) -> None:
    """`maildctl ticket export` (registered under `ticket` by admin_cli.tickets). Adds nothing yet."""
