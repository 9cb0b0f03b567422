"""Canned replies: finding one for a desk and filling in its placeholders.

A canned body is written by an admin and sent to customers, so it is filled by plain string substitution,
never by a template engine: `{{ 7*7 }}` or `{% … %}` in a canned reply stays literal text."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import CannedReply
from maild.tickets.commands import CANNED_NAME

__all__ = ["CANNED_NAME", "TICKET_VARIABLES", "find_canned", "firstname_of", "render_canned"]

# The ticket variables of maild.outbound.outgoing.ticket_variables a canned reply may use.
TICKET_VARIABLES = ("ticket_title", "ticket_number", "ticket_url", "desk_name", "customer_name")
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render_canned(
    body: str, *, firstname: str, name: str, email: str, variables: Mapping[str, object]
) -> str:
    """`body` with [FIRSTNAME], [NAME], [EMAIL] and {{ ticket_variable }} filled in. One pass over the
    body: a value that itself contains `[NAME]` or `{{ x }}` is not expanded again. Unknown `{{ x }}`
    (and variables outside TICKET_VARIABLES) are left as written, so a typo shows instead of vanishing."""
    brackets = {"[FIRSTNAME]": firstname, "[NAME]": name, "[EMAIL]": email}

    def fill(match: re.Match[str]) -> str:
        if match[1] is not None:
            return brackets[match[1]]
        key = match[2]
        if key in TICKET_VARIABLES and key in variables:
            value = variables[key]
            return "" if value is None else str(value)
        return match[0]

    pattern = r"(\[FIRSTNAME\]|\[NAME\]|\[EMAIL\])|" + _VARIABLE.pattern
    return re.sub(pattern, fill, body)


def firstname_of(display_name: str | None, email: str) -> str:
    """What a reply says after "Hello": the first word of the display name ("Alice" of "Alice Smith");
    without a name, the address's local part up to a dot, dash, underscore or plus, capitalised
    ("john.doe@x" → "John"). Kept simple on purpose: titles ("Dr. Alice Smith" → "Dr.") and
    "Smith, Alice" are not second-guessed; a desk that cares uses [NAME]."""
    words = (display_name or "").replace('"', " ").split()
    if words:
        return words[0]
    local = email.strip().strip("<>").partition("@")[0]
    first = re.split(r"[._+-]", local, maxsplit=1)[0] or local
    return first[:1].upper() + first[1:].lower()


def find_canned(session: Session, desk_id: int | None, name: str) -> CannedReply | None:
    """The canned reply `name` as seen from a desk: the desk's own wins over the all-desks one of the same
    name. Names match exactly (case-sensitive, as stored)."""
    rows = session.scalars(select(CannedReply).where(CannedReply.name == name)).all()
    own = [row for row in rows if desk_id is not None and row.desk_id == desk_id]
    shared = [row for row in rows if row.desk_id is None]
    return next(iter(own or shared), None)
