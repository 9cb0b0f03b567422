"""The desk-address table `<data_dir>/desk-addresses`: which envelope recipients are a desk's, in a small
file that `maild pipe` reads instead of the database (like Postfix's lookup tables).

maildctl rewrites it after every desk change (desk add/set/rename/remove, desk address add/remove) and
`maild serve` whenever it (re)loads the desks' addresses; `maildctl init` should too. It is written
atomically (tmp, fsync, rename), so a reader sees the old table or the new one. A missing or unreadable
table is no answer (None): the pipe then asks the daemon or runs the full path, never a wrong 67.

`is_desk_address` is the one matching rule, used by the pipe (on this table) and by the daemon's cache
(maild.ingress.intake_caches.DeskAddresses), so the two cannot disagree.

Importing this module costs only the standard library (and maild.mail's two small modules)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from maild.mail.addresses import base_address

TABLE_NAME = "desk-addresses"
FORMAT = 1


def table_path(data_dir: Path) -> Path:
    return data_dir / TABLE_NAME


def is_desk_address(address: str, known: frozenset[str]) -> bool:
    """`address` or its `local+token@domain` form is one of `known` (desk addresses, normalised), or it is
    the VERP return path of our outgoing mail (`bounces+<outbox id>-<mac>@<a desk's domain>`), where
    bounces come back."""
    base = base_address(address)
    if base in known:
        return True
    from maild.mail.tokens import parse_bounce_address  # a miss only: the pipe's hits skip its imports

    if parse_bounce_address(address) is not None:
        domain = "@" + base.rpartition("@")[2]
        return any(desk.endswith(domain) for desk in known)
    return False


def write_table(data_dir: Path, addresses: Iterable[str]) -> None:
    """Replace the table with `addresses`, atomically and durably. Raises OSError."""
    import uuid  # only maildctl and the daemon write: the pipe does not pay for it

    path = table_path(data_dir)
    body = json.dumps({"format": FORMAT, "addresses": sorted(set(addresses))}, indent=1) + "\n"
    tmp = path.parent / f".{TABLE_NAME}.tmp-{uuid.uuid4().hex}"
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_table(data_dir: Path) -> frozenset[str] | None:
    """The desks' addresses the table lists; None when it is missing, unreadable or not in our format."""
    try:
        data = json.loads(table_path(data_dir).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    addresses = data.get("addresses")
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        return None
    return frozenset(addresses)
