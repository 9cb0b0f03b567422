"""The blocklist: which senders get no ticket and no mail from us.

Entries are `alice@example.com` (one address), `@example.com` (a domain; with `subdomains`, also
`@mail.example.com` …) or a wildcard (`*` and `?`, e.g. `*@*.spam.test`, `newsletter-*@*`), all
case-insensitive. Exact and domain entries are found by an indexed lookup; wildcards are few and matched
one by one."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from maild.addresses import normalize
from storage.models import BlockEntry

_WILDCARDS = ("*", "?", "[")


class InvalidPattern(ValueError):
    """A pattern that is none of the three forms; the message says how to write one."""


def check_pattern(text: str) -> str:
    """The pattern as stored (lower-case, trimmed), or InvalidPattern."""
    pattern = text.strip().lower()
    if any(ch.isspace() for ch in pattern) or not pattern:
        raise InvalidPattern(
            f"invalid pattern {text!r}: give an address, @domain or a wildcard like *@spam.test"
        )
    if any(w in pattern for w in _WILDCARDS):
        if pattern.replace("*", "").replace("?", "") in ("", "@"):
            raise InvalidPattern(f"pattern {text!r} would block everyone")
        return pattern
    _local, at, domain = pattern.rpartition("@")
    if not at or "." not in domain or domain.startswith(".") or domain.endswith("."):
        raise InvalidPattern(
            f"invalid pattern {text!r}: give an address (alice@example.com), a domain (@example.com) "
            "or a wildcard (*@*.example.com)"
        )
    return pattern


def _domains(domain: str) -> list[str]:
    """`a.b.example.com` → its parent domains: `b.example.com`, `example.com` (not the bare TLD)."""
    parts = domain.split(".")
    return [".".join(parts[i:]) for i in range(1, len(parts) - 1)]


def find_block(session: Session, addresses: Iterable[str]) -> tuple[str, BlockEntry] | None:
    """The first of `addresses` that is blocked, with the entry that blocks it."""
    wanted = [normalize(a) for a in addresses if a and "@" in a]
    if not wanted:
        return None
    exact: set[str] = set()
    parents: set[str] = set()
    for address in wanted:
        domain = address.rpartition("@")[2]
        exact.update((address, f"@{domain}"))
        parents.update(f"@{d}" for d in _domains(domain))
    candidates = list(
        session.scalars(
            select(BlockEntry).where(
                or_(
                    BlockEntry.pattern.in_(sorted(exact)),
                    BlockEntry.pattern.in_(sorted(parents)) & BlockEntry.subdomains.is_(True),
                    *(BlockEntry.pattern.contains(w) for w in _WILDCARDS),
                )
            )
        )
    )
    for address in wanted:
        domain = address.rpartition("@")[2]
        for entry in candidates:
            if _matches(entry, address, domain):
                return address, entry
    return None


def _matches(entry: BlockEntry, address: str, domain: str) -> bool:
    pattern = entry.pattern
    if any(w in pattern for w in _WILDCARDS):
        return fnmatch.fnmatchcase(address, pattern)
    if pattern.startswith("@"):
        return pattern == f"@{domain}" or (entry.subdomains and domain.endswith("." + pattern[1:]))
    return pattern == address


def is_blocked(session: Session, address: str) -> bool:
    return find_block(session, [address]) is not None
