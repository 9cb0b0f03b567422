"""Signed reply addresses: `support+<token>@example.com` names a ticket (and, for agent mail, an agent).

The token carries the ids and an HMAC-SHA256 over them under a secret kept in the data dir, so a token
cannot be guessed or altered: a wrong or foreign one verifies as nothing and the mail is threaded as if
it had none. Lower-case only, since some MTAs fold the local part's case."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SECRET_FILE = "reply-secret"
_MAC_CHARS = 20  # 100 bits of base32
_TOKEN = re.compile(rf"^([0-9a-f]+)-([0-9a-f]+)-([a-z2-7]{{{_MAC_CHARS}}})$")


@dataclass(frozen=True)
class ReplyTarget:
    ticket_id: int
    agent_id: int | None


@cache
def load_secret(data_dir: Path) -> bytes:
    """The server secret, created (0600, never overwritten) on first use."""
    path = data_dir / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use theirs
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(32))
        fh.flush()
        os.fsync(fh.fileno())
    return path.read_bytes()


def _mac(secret: bytes, ticket_id: int, agent_id: int) -> str:
    digest = hmac.new(secret, f"reply:{ticket_id}:{agent_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:_MAC_CHARS]


def make_token(secret: bytes, ticket_id: int, agent_id: int | None = None) -> str:
    agent = agent_id or 0
    return f"{ticket_id:x}-{agent:x}-{_mac(secret, ticket_id, agent)}"


def verify_token(secret: bytes, token: str) -> ReplyTarget | None:
    match = _TOKEN.match(token.lower())
    if match is None:
        return None
    ticket_id, agent_id = int(match[1], 16), int(match[2], 16)
    if not hmac.compare_digest(match[3], _mac(secret, ticket_id, agent_id)):
        return None
    return ReplyTarget(ticket_id, agent_id or None)


def reply_address(secret: bytes, desk_address: str, ticket_id: int, agent_id: int | None = None) -> str:
    local, _, domain = desk_address.rpartition("@")
    return f"{local}+{make_token(secret, ticket_id, agent_id)}@{domain}"


def token_of(address: str) -> str | None:
    """The `+detail` of an address, if any."""
    local = address.rpartition("@")[0]
    return local.split("+", 1)[1] if "+" in local else None


# An agent's internal note goes to `<local>+note-<token>@…`: the same token, marked as not for the customer.
NOTE_PREFIX = "note-"


def note_address(secret: bytes, desk_address: str, ticket_id: int, agent_id: int) -> str:
    local, _, domain = desk_address.rpartition("@")
    return f"{local}+{NOTE_PREFIX}{make_token(secret, ticket_id, agent_id)}@{domain}"


def read_reply_address(secret: bytes, address: str) -> tuple[ReplyTarget, bool] | None:
    """(target, is_note_address) of a signed reply or note address; None for any other address."""
    detail = token_of(address)
    if not detail:
        return None
    is_note = detail.lower().startswith(NOTE_PREFIX)
    target = verify_token(secret, detail[len(NOTE_PREFIX) :] if is_note else detail)
    if target is None or (is_note and target.agent_id is None):
        return None  # note addresses are only ever made for an agent
    return target, is_note


# --- VERP: the envelope sender of each outgoing mail names the outbox row and the recipient -------------

BOUNCE_LOCAL = "bounces"
_BOUNCE_TOKEN = re.compile(rf"^([0-9a-f]+)-([a-z2-7]{{{_MAC_CHARS}}})$")


def _bounce_mac(secret: bytes, outbox_id: int, recipient: str) -> str:
    message = f"bounce:{outbox_id}:{recipient.lower()}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:_MAC_CHARS]


def bounce_address(secret: bytes, desk_address: str, outbox_id: int, recipient: str) -> str:
    """`bounces+<outbox id>-<mac>@<desk domain>`: a bounce to it tells which mail failed for whom. The
    recipient is only in the MAC (not readable in the address), so a DSN that names no recipient is
    matched by trying the row's recipients."""
    domain = desk_address.rpartition("@")[2]
    return f"{BOUNCE_LOCAL}+{outbox_id:x}-{_bounce_mac(secret, outbox_id, recipient)}@{domain}"


def parse_bounce_address(address: str) -> tuple[int, str] | None:
    """(outbox id, mac) of a VERP address, unverified: `bounce_matches` checks a recipient against it."""
    local = address.rpartition("@")[0].lower()
    prefix, _, token = local.partition("+")
    match = _BOUNCE_TOKEN.match(token) if prefix == BOUNCE_LOCAL else None
    return (int(match[1], 16), match[2]) if match else None


def bounce_matches(secret: bytes, outbox_id: int, mac: str, recipient: str) -> bool:
    return hmac.compare_digest(mac, _bounce_mac(secret, outbox_id, recipient))
