"""What `maildctl contact forget` replaces in text it keeps (another customer's mail on a shared ticket, an
audit entry, a spool row's reason): the person's address (by the pseudonym), their names (display name,
and the names their mails gave) and the lines they wrote, wherever another mail quotes them.

A name shorter than 3 characters, and a line shorter than MIN_LINE, is not replaced: too likely to be
someone else's word. A first name alone ("Hi Anna,") is not looked for either, for the same reason:
the messages of the person's own tickets, where such greetings are, are erased whole."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from maild.tickets.contact_data import Holdings, address_bytes_pattern, address_pattern

NAME_REMOVED = "[name removed]"
LINE_REMOVED = "[removed]"
MIN_LINE = 20
_QUOTE_MARKS = re.compile(r"^[\s>|]+")


@dataclass(frozen=True)
class Scrubber:
    address: str
    pseudonym: str
    names: tuple[str, ...]
    lines: tuple[str, ...]  # longest first, so a line is never cut by a shorter one inside it

    def text(self, value: str) -> str:
        if not value:
            return value
        value = address_pattern(self.address).sub(self.pseudonym, value)
        for name in self.names:
            value = re.sub(re.escape(name), NAME_REMOVED, value, flags=re.IGNORECASE)
        for line in self.lines:
            value = value.replace(line, LINE_REMOVED)
        return value

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value

    def raw(self, value: bytes) -> bytes:
        """A mail's bytes: the same replacements where the text is plain (encoded words and quoted-printable
        or base64 bodies are not decoded)."""
        value = address_bytes_pattern(self.address).sub(self.pseudonym.encode(), value)
        for name in self.names:
            value = re.sub(re.escape(name.encode()), NAME_REMOVED.encode(), value, flags=re.IGNORECASE)
        for line in self.lines:
            value = value.replace(line.encode(), LINE_REMOVED.encode())
        return value

    def names_bytes(self, value: bytes) -> bool:
        lowered = value.lower()
        return bool(address_bytes_pattern(self.address).search(value)) or any(
            n.lower().encode() in lowered for n in self.names
        )


def scrubber_for(held: Holdings, pseudonym: str) -> Scrubber:
    """The person's address, names and written lines, as found before anything is erased."""
    names = {held.contact.display_name.strip()} if held.contact is not None else set()
    names |= {m.from_name.strip() for m in held.authored}
    lines: set[str] = set()
    for message in held.authored:
        for text in (message.text, message.visible_text):
            for line in text.splitlines():
                line = _QUOTE_MARKS.sub("", line).strip()
                if len(line) >= MIN_LINE:
                    lines.add(line)
    return Scrubber(
        held.address,
        pseudonym,
        tuple(sorted((n for n in names if len(n) >= 3), key=len, reverse=True)),
        tuple(sorted(lines, key=len, reverse=True)),
    )
