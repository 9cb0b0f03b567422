"""What the end-to-end tests share besides fixtures."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from tests.daemon import write_config
from tests.servers.dovecot import Dovecot
from tests.servers.postfix import maild_settings

DESK = "support@support.test"
TIMEOUT = 60.0  # generous: two backends on two shared cores


def relays(dovecot: Dovecot) -> dict[str, str]:
    """Postfix's route to the customers' domain: Dovecot's LMTP."""
    return {dovecot.domain: f"lmtp:inet:{dovecot.host}:{dovecot.lmtp_port}"}


def toml_table(name: str, values: dict[str, object]) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in values.items())


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def serve_config(
    path: Path,
    data_dir: Path,
    database_url: str,
    lmtp_port: int,
    smarthost_port: int | None = None,
    **listen: object,
) -> Path:
    """maild's config for `maild serve` behind Postfix, built from docs/postfix.md (LMTP listener, and the
    smarthost when `smarthost_port` is given); `listen` overrides keys of [listen] (e.g. a smaller size)."""
    tables = maild_settings(lmtp_port=lmtp_port, smarthost_port=smarthost_port)
    extra = toml_table("outgoing", tables["outgoing"]) if "outgoing" in tables else ""
    return write_config(path, data_dir, database_url, listen={**tables["listen"], **listen}, extra=extra)


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg
