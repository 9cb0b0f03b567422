"""The JSON API's bearer tokens (issue 19): made by `maildctl api-token add`, checked by the API on every
request. A token is `maild_` and 43 random URL-safe characters (256 bits); only its sha256 is stored, so
the database never holds what a request must show. Adding and revoking are audited; `last_used_at` is
bookkeeping, written at most once a minute per token so that reads do not queue for the write lock."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.storage.models import ApiToken, naive_utc
from maild.tickets.ticket_checks import InvalidValue
from maild.tickets.ticket_ops import iso, record

SCOPES = ("read", "write")
PREFIX = "maild_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
LAST_USED_EVERY = dt.timedelta(minutes=1)


class TokenRefused(InvalidValue):
    """A name that is taken or unknown, a scope that is not one."""


@dataclass(frozen=True)
class Caller:
    """Who a valid token says is calling: its name (the audit's `api:<name>`) and scope."""

    token_id: int
    name: str
    scope: str
    last_used_at: dt.datetime | None

    @property
    def actor(self) -> str:
        return f"api:{self.name}"

    @property
    def may_write(self) -> bool:
        return self.scope == "write"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def add_token(session: Session, name: str, scope: str, *, actor: str, now: dt.datetime) -> str:
    """A new token named `name`: returns the token, which is stored nowhere (only its sha256)."""
    if not NAME_PATTERN.fullmatch(name):
        raise TokenRefused(
            f"{name!r} is not a token name: use 1-100 letters, digits and - _ . (first a letter or digit)"
        )
    if scope not in SCOPES:
        raise TokenRefused(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    taken = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
    if taken is not None:
        revoked = " (revoked: its name stays taken)" if taken.revoked_at is not None else ""
        raise TokenRefused(f"a token named {name!r} exists{revoked}: choose another name")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name, scope=scope, token_sha256=digest(token), created_at=naive_utc(now), created_by=actor
        )
    )
    record(session, "api_token_add", {"name": name, "scope": scope}, actor=actor)
    return token


def revoke_token(session: Session, name: str, *, actor: str, now: dt.datetime) -> bool:
    """Revoke the token named `name`; False when it was revoked already."""
    row = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
    if row is None:
        raise TokenRefused(f"no token named {name!r}", " (see 'maildctl api-token list')")
    if row.revoked_at is not None:
        return False
    row.revoked_at = naive_utc(now)
    record(session, "api_token_remove", {"name": name, "scope": row.scope}, actor=actor)
    return True


def token_json(row: ApiToken) -> dict[str, Any]:
    return {
        "name": row.name,
        "scope": row.scope,
        "created_at": iso(row.created_at),
        "created_by": row.created_by,
        "last_used_at": iso(row.last_used_at),
        "revoked": row.revoked_at is not None,
        "revoked_at": iso(row.revoked_at),
    }


def list_tokens(session: Session) -> list[dict[str, Any]]:
    return [token_json(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.name))]


def caller_of(session: Session, token: str) -> Caller | None:
    """The caller a bearer token stands for; None when it is no token or a revoked one."""
    if not token.startswith(PREFIX):
        return None
    row = session.scalars(select(ApiToken).where(ApiToken.token_sha256 == digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return Caller(row.id, row.name, row.scope, row.last_used_at)


def due_for_last_used(caller: Caller, now: dt.datetime) -> bool:
    return caller.last_used_at is None or naive_utc(now) - caller.last_used_at >= LAST_USED_EVERY


def mark_used(session: Session, token_id: int, now: dt.datetime) -> None:
    row = session.get(ApiToken, token_id)
    if row is not None:
        row.last_used_at = naive_utc(now)
