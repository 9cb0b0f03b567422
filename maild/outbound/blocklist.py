"""The blocklist: which senders get no ticket and no mail from us.

Entries are `alice@example.com` (one address), `@example.com` (a domain; with `subdomains`, also
`@mail.example.com` …) or a wildcard (`*` and `?`, e.g. `*@*.spam.test`, `newsletter-*@*`), all
case-insensitive. Exact and domain entries are found by an indexed lookup; wildcards are few and matched
one by one."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from maild.mail.addresses import normalize
from maild.storage.models import BlockEntry

_WILDCARDS = ("*", "?", "[")


class _Entry(Protocol):
    """What matching needs of an entry: a BlockEntry row, or a Rule held in memory."""

    @property
    def pattern(self) -> str: ...

    @property
    def subdomains(self) -> bool: ...


@dataclass(frozen=True)
class Rule:
    """A blocklist entry as plain data, for a snapshot that outlives its session (the intake's cache)."""

    pattern: str
    subdomains: bool
    reason: str


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


def is_domain_pattern(pattern: str) -> bool:
    """`@example.com`: the one form `subdomains` means something for."""
    return pattern.startswith("@") and not any(w in pattern for w in _WILDCARDS)


def load_rules(session: Session) -> list[Rule]:
    return [
        Rule(e.pattern, e.subdomains, e.reason)
        for e in session.scalars(select(BlockEntry).order_by(BlockEntry.id))
    ]


def match_rules(rules: Sequence[Rule], addresses: Iterable[str]) -> tuple[str, Rule] | None:
    """find_block over a snapshot: the first of `addresses` that a rule blocks, with that rule."""
    for address in (normalize(a) for a in addresses if a and "@" in a):
        domain = address.rpartition("@")[2]
        for rule in rules:
            if _matches(rule, address, domain):
                return address, rule
    return None


def _matches(entry: _Entry, address: str, domain: str) -> bool:
    pattern = entry.pattern
    if any(w in pattern for w in _WILDCARDS):
        return fnmatch.fnmatchcase(address, pattern)
    if pattern.startswith("@"):
        return pattern == f"@{domain}" or (entry.subdomains and domain.endswith("." + pattern[1:]))
    return pattern == address


def is_blocked(session: Session, address: str) -> bool:
    return find_block(session, [address]) is not None
