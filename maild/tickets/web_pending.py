"""New tickets from the web waiting for their address to be confirmed (a desk's `web_confirm_address`):
until the customer follows the link mailed to them, nothing is spooled, ticketed or sent but that link.

A pending submission is a file in `<data_dir>/web-pending/`, not a table: it is the finished mail (its
attachments included, up to 25 MB) plus a line of JSON (desk, envelope, when), lives a day at most, and is
either spooled once or thrown away; the spool and the database never see an unconfirmed mail. The file is
named by the sha256 of the confirmation token (a random 32 bytes, base64url), so the directory's listing
or a backup opens nothing. Written durably (fsync, rename, fsync of the directory) before the customer is
told to look for the mail. Confirming renames the file away first (atomic: a double click spools once)
and puts it back if the spool refuses it (nothing lost, the link still works).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.outbound.outgoing import queue_desk_mail
from maild.storage.models import Desk

CONFIRM_TEMPLATE = "web_confirm_address"
PENDING_DIR = "web-pending"
PENDING_HOURS = 24
PENDING_MAX = 2000  # files kept at most: a flood of unconfirmed forms cannot fill the disk unbounded
SUFFIX, CLAIMED = ".pending", ".claimed"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Pending:
    desk: str
    recipient: str  # the envelope recipient: the desk's primary address when the form was sent
    mail_from: str  # the customer's address
    subject: str
    created: dt.datetime
    raw: bytes


def _folder(data_dir: Path) -> Path:
    return data_dir / PENDING_DIR


def _path(data_dir: Path, token: str, suffix: str = SUFFIX) -> Path:
    return _folder(data_dir) / (hashlib.sha256(token.encode("ascii")).hexdigest() + suffix)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep(data_dir: Path, *, now: dt.datetime) -> int:
    """Remove what expired (and claims a crash left behind for longer than that); the number left."""
    folder = _folder(data_dir)
    if not folder.is_dir():
        return 0
    limit = now.timestamp() - PENDING_HOURS * 3600
    left = 0
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
            else:
                left += 1
        except FileNotFoundError:
            continue  # confirmed or swept at the same time
    return left


def store(data_dir: Path, pending: Pending) -> str | None:
    """Keep `pending` durably; its confirmation token, or None when too many are waiting already."""
    folder = _folder(data_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    if sweep(data_dir, now=pending.created) >= PENDING_MAX:
        return None
    token = secrets.token_urlsafe(32)
    head = {
        "desk": pending.desk,
        "recipient": pending.recipient,
        "mail_from": pending.mail_from,
        "subject": pending.subject,
        "created": pending.created.isoformat(),
    }
    final = _path(data_dir, token)
    temporary = final.with_suffix(".tmp")
    with open(temporary, "wb") as fh:
        fh.write(json.dumps(head).encode("utf-8") + b"\n" + pending.raw)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, final)
    _fsync_dir(folder)
    return token


def _read(path: Path) -> Pending:
    head, _, raw = path.read_bytes().partition(b"\n")
    fields = json.loads(head)
    created = dt.datetime.fromisoformat(fields.pop("created"))
    return Pending(created=created, raw=raw, **fields)


def load(data_dir: Path, token: str, *, now: dt.datetime) -> Pending | None:
    """The submission waiting under `token`; None when unknown, confirmed already or expired."""
    if not _TOKEN.fullmatch(token):
        return None
    try:
        found = _read(_path(data_dir, token))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if now - found.created > dt.timedelta(hours=PENDING_HOURS):
        return None
    return found


def claim(data_dir: Path, token: str) -> Path | None:
    """Take the submission for spooling (None when another request took it or it is gone)."""
    if not _TOKEN.fullmatch(token):
        return None
    claimed = _path(data_dir, token, f"{CLAIMED}-{secrets.token_hex(4)}")
    try:
        os.rename(_path(data_dir, token), claimed)
    except FileNotFoundError:
        return None
    return claimed


def read_claimed(claimed: Path) -> Pending:
    return _read(claimed)


def release(data_dir: Path, token: str, claimed: Path) -> None:
    """Put a claimed submission back (its spooling failed): the link works again."""
    os.rename(claimed, _path(data_dir, token))


def discard(data_dir: Path, token: str) -> None:
    """Forget a submission nobody can confirm (its confirmation mail was not queued)."""
    _path(data_dir, token).unlink(missing_ok=True)


def finish(claimed: Path) -> None:
    """The submission is spooled: its file goes."""
    claimed.unlink(missing_ok=True)
    _fsync_dir(claimed.parent)


def confirm_url(public_url: str, desk: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/new/{quote(desk, safe='')}/confirm/{token}"


def queue_confirmation(
    session: Session,
    cfg: Config,
    desk_name: str,
    name: str,
    address: str,
    subject: str,
    token: str,
    *,
    now: dt.datetime,
) -> int | None:
    """The one mail an unconfirmed address gets: the link that sends its request; its outbox id. None
    when screening dropped it (blocked, bouncing, or over its automatic mails for the hour)."""
    desk = session.scalars(select(Desk).where(Desk.name == desk_name)).one()
    queued = queue_desk_mail(
        session,
        cfg,
        desk,
        CONFIRM_TEMPLATE,
        [(name, address)],
        automatic=True,
        auto_submitted="auto-generated",
        now=now,
        variables={
            "customer_name": name or address,
            "confirm_url": confirm_url(cfg.web.public_url, desk_name, token),
            "original_subject": subject,
            "valid_hours": PENDING_HOURS,
        },
    )
    if queued is None:
        return None
    session.flush()  # its id, to send it right away
    return queued.id
