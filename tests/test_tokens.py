"""Signed reply addresses: round trip, and nothing guessed, altered or foreign verifies."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from maild.mail.tokens import ReplyTarget, load_secret, make_token, reply_address, token_of, verify_token

SECRET = b"s" * 32


@pytest.mark.parametrize(("ticket_id", "agent_id"), [(1, None), (4711, None), (12, 3), (2**40, 2**20)])
def test_a_token_names_its_ticket_and_agent(ticket_id: int, agent_id: int | None) -> None:
    token = make_token(SECRET, ticket_id, agent_id)
    assert token == token.lower() and "@" not in token and "+" not in token
    assert verify_token(SECRET, token) == ReplyTarget(ticket_id, agent_id)
    assert verify_token(SECRET, token.upper()) == ReplyTarget(ticket_id, agent_id)  # MTAs that fold case


def test_altered_tokens_do_not_verify() -> None:
    token = make_token(SECRET, 42)
    ticket, agent, mac = token.split("-")
    assert verify_token(SECRET, f"{43:x}-{agent}-{mac}") is None  # another ticket, same MAC
    assert verify_token(SECRET, f"{ticket}-{5:x}-{mac}") is None  # an agent added
    flipped = mac[:-1] + ("a" if mac[-1] != "a" else "b")
    assert verify_token(SECRET, f"{ticket}-{agent}-{flipped}") is None
    assert verify_token(b"another server" * 3, token) is None


@pytest.mark.parametrize(
    "junk", ["", "abc", "1-0-", "1-0-" + "a" * 19, "zz-0-" + "a" * 20, "1-0-" + "1" * 20]
)
def test_malformed_tokens_are_no_tokens(junk: str) -> None:
    assert verify_token(SECRET, junk) is None


def test_reply_address_keeps_the_desk_address_around_the_token() -> None:
    address = reply_address(SECRET, "support@example.com", 7)
    assert address.startswith("support+") and address.endswith("@example.com")
    assert verify_token(SECRET, token_of(address) or "") == ReplyTarget(7, None)
    assert token_of("support@example.com") is None


def test_the_secret_is_created_once_private_and_kept(tmp_path: Path) -> None:
    first = load_secret(tmp_path)
    assert len(first) == 32
    path = tmp_path / "reply-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    load_secret.cache_clear()
    assert load_secret(tmp_path) == first  # read back, not regenerated
    other = tmp_path / "other"
    assert load_secret(other) != first
