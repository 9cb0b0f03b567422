"""One TOML file configures maild: `--config`, else `MAILD_CONFIG`, else `./maild.toml`.

Only `data_dir` is required; everything else has an embedded default (SQLite under the data dir,
outgoing mail to `<data_dir>/outgoing` as a Maildir). Validation is strict so that a typo in a key is
reported instead of silently ignored.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EX_CONFIG = 78


MiB = 1024 * 1024


class ConfigError(Exception):
    """An invalid configuration: names the key and the problem in one line."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config: {key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class ListenAddress:
    """Where a listener binds: TCP `host:port`, or a unix socket `path`."""

    host: str = ""
    port: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A relaying MTA on the same host (LMTP from Postfix, say) is the normal client: it must not be throttled.
LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True)
class Listen:
    """The `[listen]` table: what `maild serve` accepts mail on, and its limits."""

    lmtp: tuple[ListenAddress, ...] = ()
    smtp: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 2525),)
    # 30 MB of attachments grow to about 40.5 MB in base64 (4/3, plus line ends): 50 MiB leaves room.
    max_message_bytes: int = 50 * MiB
    max_connections: int = 100
    timeout: float = 300.0  # seconds a client may stay silent (RFC 5321 suggests 5 minutes)
    workers: int = 2  # pipeline worker threads
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Per client address, like Postfix's anvil: one address cannot take every slot (0 turns a limit off).
    max_connections_per_client: int = 10  # open sessions from one address
    max_connection_rate: int = 60  # connection attempts from one address per minute, refused ones too
    # Clients these limits do not apply to; unix-socket clients (the local MTA) never have them.
    client_limit_exceptions: tuple[IPNetwork, ...] = LOOPBACK_NETWORKS
    # Seconds a client may stay silent outside a mail transaction (before MAIL FROM, between mails):
    # an idle connection costs a slot and sends nothing worth waiting for. `timeout` applies from MAIL on.
    command_timeout: float = 60.0
    # During DATA: a client that falls more than `min_data_rate_grace` seconds behind this many bytes per
    # second is dropped (421 4.4.2, nothing acknowledged); 0 turns it off. Postfix's smtpd_min_data_rate.
    min_data_rate: int = 500
    min_data_rate_grace: float = 30.0


@dataclass(frozen=True)
class ImapAccount:
    """One `[[imap]]` entry: a mailbox `maild serve` polls, whose mail goes to `desk`."""

    name: str  # unique; the key of its polling state (ImapState.account)
    desk: str
    host: str
    username: str
    port: int = 993
    tls: bool = True  # IMAPS; plain IMAP only to a loopback host (tests, a local Dovecot)
    password_env: str | None = None
    password_file: Path | None = None
    folder: str = "INBOX"
    move_to: str | None = None  # after spooling: move there instead of setting \Seen
    poll_seconds: float = 60.0
    idle: bool = True

    def password(self) -> str:
        """Read when needed, not at load: `maild pipe` and maildctl (another user, often) must not fail on
        a secret only `maild serve` needs. Raises ConfigError naming the key."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env, "")
            if not value:
                raise ConfigError(
                    f"imap.{self.name}.password_env", f"environment variable {self.password_env} is not set"
                )
            return value
        assert self.password_file is not None  # parsing guarantees exactly one of the two
        key = f"imap.{self.name}.password_file"
        try:
            value = self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(key, f"cannot read {self.password_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(key, f"{self.password_file} is not UTF-8") from None
        if not value:
            raise ConfigError(key, f"{self.password_file} is empty")
        return value


def check_imap_secrets(cfg: Config) -> None:
    """Every IMAP password can be read now (for `maild check-config` and `maild serve` at start)."""
    for account in cfg.imap:
        account.password()


@dataclass(frozen=True)
class Schedule:
    """The `[scheduler]` table: how often `maild serve` runs its periodic jobs, in seconds."""

    outbox_seconds: float = 30.0  # send what is due (retries; mail queued by maildctl or a crashed sender)
    auto_close_seconds: float = 300.0
    escalation_seconds: float = 300.0  # per-desk escalation rules and reminders (maild.tickets.escalations)
    recovery_seconds: float = 60.0  # spool rows left 'received' by a transient failure
    retention_seconds: float = 3600.0  # the spool's retention purge, when [spool] retention_days is set


@dataclass(frozen=True)
class Hygiene:
    """The `[hygiene]` table: automatic answers and blocked senders."""

    autoreply_per_hour: int = 5  # automatic mails to any one address, at most (two robots cannot ping-pong)
    autoreply_per_day: int = 20
    blocked: str = "archive"  # archive: accept, keep as outcome `blocked` | reject: 550 at SMTP/LMTP time
    # Automatic mail to customers from one desk per hour, all addresses together (rotating addresses
    # cannot make the desk mail the world); over it the mail is not queued and the ticket says so.
    autoreply_desk_per_hour: int = 200
    # Attachments kept per mail; the rest are recorded refused ("more than N attachments in one mail").
    max_attachments_per_mail: int = 100
    # Seconds of work one mail may take (parsing and the stages); a mail over it is quarantined with the
    # reason instead of holding a worker and the write lock (and of being retried to do it again).
    max_processing_seconds: float = 30.0


BLOCKED_ACTIONS = ("archive", "reject")


@dataclass(frozen=True)
class Agents:
    """The `[agents]` table: how agents' mail is authenticated beyond the reply token and From."""

    # authserv-ids (RFC 8601) of the MTAs whose Authentication-Results headers are believed: a DKIM, SPF
    # or DMARC failure recorded by one of them refuses an agent reply. Empty: such headers are not read.
    trusted_authserv_ids: tuple[str, ...] = ()


# Each worker holds one database connection, intake threads one each; the engine's pool has 5 + 10 overflow.
MAX_WORKERS = 10


@dataclass(frozen=True)
class Config:
    path: Path | None
    data_dir: Path
    database_url: str
    busy_timeout_ms: int
    smarthost: tuple[str, int] | None
    smtp_timeout: float
    ticket_url: str
    listen: Listen = Listen()
    # Temporary failures (4xx, no connection) are retried this long, then the mail is given up as failed.
    retry_hours: float = 120.0
    schedule: Schedule = Schedule()
    hygiene: Hygiene = Hygiene()
    agents: Agents = Agents()
    imap: tuple[ImapAccount, ...] = ()
    # Raw mail older than this many days is deleted from the spool (maild/tickets/retention.py); 0 keeps it
    # forever.
    spool_retention_days: float = 0.0

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def attachment_dir(self) -> Path:
        return self.data_dir / "attachments"

    @property
    def outgoing_maildir(self) -> Path:
        return self.data_dir / "outgoing"

    @property
    def template_dir(self) -> Path:
        """Per-desk template overrides live in `<template_dir>/<desk name>/`."""
        return self.data_dir / "templates"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_SCHEMA: dict[str, Any] = {
    "data_dir": str,
    "ticket_url": str,
    "database": {"url": str, "busy_timeout_ms": int},
    "outgoing": {"smarthost": str, "timeout": (int, float), "retry_hours": (int, float)},
    "hygiene": {
        "autoreply_per_hour": int,
        "autoreply_per_day": int,
        "blocked": str,
        "autoreply_desk_per_hour": int,
        "max_attachments_per_mail": int,
        "max_processing_seconds": (int, float),
    },
    "agents": {"trusted_authserv_ids": (list,)},
    "scheduler": {
        "outbox_seconds": (int, float),
        "auto_close_seconds": (int, float),
        "escalation_seconds": (int, float),
        "recovery_seconds": (int, float),
        "retention_seconds": (int, float),
    },
    "spool": {"retention_days": (int, float)},
    "listen": {
        "lmtp": (str, list),
        "smtp": (str, list),
        "max_message_bytes": int,
        "max_connections": int,
        "timeout": (int, float),
        "workers": int,
        "tls_cert": str,
        "tls_key": str,
        "max_connections_per_client": int,
        "max_connection_rate": int,
        "client_limit_exceptions": (list,),
        "command_timeout": (int, float),
        "min_data_rate": int,
        "min_data_rate_grace": (int, float),
    },
    "imap": list,  # [[imap]]: each entry is checked by _parse_imap
}

_KINDS = {
    (int, float): "a number",
    (str, list): "a string or a list of strings",
    list: "an array of tables ([[imap]] per entry)",
    (list,): "a list",
}


def _check_keys(table: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> None:
    for key, value in table.items():
        name = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(name, f"unknown key (known here: {', '.join(sorted(schema))})")
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(name, "must be a table, e.g. [" + name + "]")
            _check_keys(value, expected, prefix=f"{name}.")
        elif isinstance(value, bool) or not isinstance(value, expected):
            kind = _KINDS.get(expected) or f"a {expected.__name__}"
            raise ConfigError(name, f"must be {kind}, got {value!r}")


def _parse_hostport(key: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f'must be "host:port", got {value!r}')
    return host.strip("[]"), int(port)


def _parse_listen_address(key: str, value: str) -> ListenAddress:
    if value.startswith("unix:"):
        path = Path(value.removeprefix("unix:"))
        if not path.is_absolute():
            raise ConfigError(key, f'needs an absolute socket path ("unix:/run/maild/lmtp"), got {value!r}')
        return ListenAddress(path=path)
    try:
        host, port = _parse_hostport(key, value)
    except ConfigError:
        raise ConfigError(key, f'must be "host:port" or "unix:/path", got {value!r}') from None
    return ListenAddress(host, port)


def _parse_listen_addresses(key: str, value: str | list[Any]) -> tuple[ListenAddress, ...]:
    values = [value] if isinstance(value, str) else value
    for item in values:
        if not isinstance(item, str):
            raise ConfigError(key, f"must be a string or a list of strings, got {value!r}")
    addresses = tuple(_parse_listen_address(key, item) for item in values)
    if len(set(addresses)) != len(addresses):
        raise ConfigError(key, f"lists an address twice: {value!r}")
    return addresses


def _parse_listen(table: dict[str, Any], path: Path | None) -> Listen:
    default = Listen()
    if "lmtp" in table or "smtp" in table:
        # The listeners named are the ones that run: `lmtp = "unix:/…"` alone means no SMTP port.
        lmtp = _parse_listen_addresses("listen.lmtp", table.get("lmtp", []))
        smtp = _parse_listen_addresses("listen.smtp", table.get("smtp", []))
    else:
        lmtp, smtp = default.lmtp, default.smtp
    shared = set(lmtp) & set(smtp)
    if shared:
        raise ConfigError("listen.smtp", f"{min(map(str, shared))} is also an LMTP address")
    limits = {
        "max_message_bytes": (default.max_message_bytes, 1024),
        "max_connections": (default.max_connections, 1),
        "workers": (default.workers, 1),
    }
    values = {}
    for key, (fallback, least) in limits.items():
        values[key] = table.get(key, fallback)
        if values[key] < least:
            raise ConfigError(f"listen.{key}", f"must be >= {least}, got {values[key]}")
    if values["workers"] > MAX_WORKERS:
        raise ConfigError("listen.workers", f"must be <= {MAX_WORKERS} (one database connection each)")
    timeout = float(table.get("timeout", default.timeout))
    if timeout <= 0:
        raise ConfigError("listen.timeout", "must be > 0 seconds")
    client_limits = {}
    for key in ("max_connections_per_client", "max_connection_rate", "min_data_rate"):
        client_limits[key] = table.get(key, getattr(default, key))
        if client_limits[key] < 0:
            raise ConfigError(f"listen.{key}", f"must be >= 0 (0: no limit), got {client_limits[key]}")
    # A `timeout` below the default shortens the idle time before MAIL too, unless that is set.
    command_timeout = float(table.get("command_timeout", min(default.command_timeout, timeout)))
    if command_timeout <= 0:
        raise ConfigError("listen.command_timeout", "must be > 0 seconds")
    if command_timeout > timeout:
        raise ConfigError(
            "listen.command_timeout", f"must be <= listen.timeout ({timeout:g} s), got {command_timeout:g}"
        )
    grace = float(table.get("min_data_rate_grace", default.min_data_rate_grace))
    if grace <= 0:
        raise ConfigError("listen.min_data_rate_grace", "must be > 0 seconds")
    exceptions = _parse_networks(
        "listen.client_limit_exceptions",
        table.get("client_limit_exceptions", [str(n) for n in default.client_limit_exceptions]),
    )
    # Relative to the config file, like data_dir. The files are read by `maild serve` only: `maild pipe`
    # and maildctl, often another user, must not fail on a key they cannot read.
    base = path.parent if path is not None else Path.cwd()
    tls: dict[str, Path | None] = {}
    for key in ("tls_cert", "tls_key"):
        value = table.get(key)
        if value is not None and not value.strip():
            raise ConfigError(f"listen.{key}", "must name a PEM file, got an empty string")
        tls[key] = (base / Path(value).expanduser()).resolve() if value else None
    if (tls["tls_cert"] is None) != (tls["tls_key"] is None):
        missing = "tls_key" if tls["tls_key"] is None else "tls_cert"
        raise ConfigError(f"listen.{missing}", "missing: STARTTLS needs both tls_cert and tls_key")
    return Listen(
        lmtp=lmtp,
        smtp=smtp,
        max_message_bytes=values["max_message_bytes"],
        max_connections=values["max_connections"],
        timeout=timeout,
        workers=values["workers"],
        tls_cert=tls["tls_cert"],
        tls_key=tls["tls_key"],
        max_connections_per_client=client_limits["max_connections_per_client"],
        max_connection_rate=client_limits["max_connection_rate"],
        client_limit_exceptions=exceptions,
        command_timeout=command_timeout,
        min_data_rate=client_limits["min_data_rate"],
        min_data_rate_grace=grace,
    )


def _parse_networks(key: str, values: list[Any]) -> tuple[IPNetwork, ...]:
    networks = []
    for value in values:
        try:
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not a string")
            networks.append(ipaddress.ip_network(value.strip()))
        except ValueError as exc:
            raise ConfigError(
                key, f'must list IP addresses or networks ("192.0.2.7", "10.0.0.0/8"), got {value!r}: {exc}'
            ) from None
    return tuple(networks)


_IMAP_SCHEMA: dict[str, Any] = {
    "name": str,
    "desk": str,
    "host": str,
    "port": int,
    "tls": bool,
    "username": str,
    "password_env": str,
    "password_file": str,
    "folder": str,
    "move_to": str,
    "poll_seconds": (int, float),
    "idle": bool,
}
_IMAP_NAME_MAX = 200  # ImapState.account and .folder are String(200)
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _parse_imap(entries: list[Any], path: Path | None) -> tuple[ImapAccount, ...]:
    accounts = tuple(_parse_imap_entry(i, entry, path) for i, entry in enumerate(entries))
    names = [account.name for account in accounts]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"imap.{name}.name", f"{name!r} names two [[imap]] entries; names must be unique"
            )
    return accounts


def _parse_imap_entry(index: int, entry: Any, path: Path | None) -> ImapAccount:
    if not isinstance(entry, dict):
        raise ConfigError(f"imap[{index}]", "must be a table: write each account as [[imap]]")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"imap[{index}].name", "missing: every [[imap]] entry needs a unique name")
    # Errors name the entry by its name from here on: easier to find in a file than an index.
    prefix = f"imap.{name}."
    if "password" in entry:
        raise ConfigError(
            f"{prefix}password",
            "not allowed: keep the password out of this file (password_env or password_file)",
        )
    for key, value in entry.items():
        if key not in _IMAP_SCHEMA:
            raise ConfigError(
                f"{prefix}{key}", f"unknown key (known here: {', '.join(sorted(_IMAP_SCHEMA))})"
            )
        expected = _IMAP_SCHEMA[key]
        # bool is an int in Python: `port = true` must not pass as port 1, nor `tls = 1` as a bool.
        if (expected is bool) != isinstance(value, bool) or not isinstance(value, expected):
            kind = _KINDS.get(expected) or f"a {expected.__name__}"
            raise ConfigError(f"{prefix}{key}", f"must be {kind}, got {value!r}")
    if len(name) > _IMAP_NAME_MAX or name != name.strip():
        raise ConfigError(
            f"{prefix}name", f"must be at most {_IMAP_NAME_MAX} characters, without outer spaces"
        )
    for key in ("desk", "host", "username"):
        if not entry.get(key, "").strip():
            raise ConfigError(f"{prefix}{key}", "missing: required in every [[imap]] entry")
    tls = entry.get("tls", True)
    host = entry["host"].strip()
    if not tls and host.lower() not in _LOOPBACK_HOSTS and not host.startswith("127."):
        raise ConfigError(
            f"{prefix}tls",
            f"false only for a loopback host (the password would cross the network in clear), not {host!r}",
        )
    port = entry.get("port", 993 if tls else 143)
    if not 0 < port < 65536:
        raise ConfigError(f"{prefix}port", f"must be 1-65535, got {port}")
    secrets = [key for key in ("password_env", "password_file") if key in entry]
    if len(secrets) != 1:
        problem = "give only one of" if secrets else "missing: give one of"
        raise ConfigError(f"{prefix}password_env", f"{problem} password_env and password_file")
    if not entry[secrets[0]].strip():
        raise ConfigError(f"{prefix}{secrets[0]}", "must not be empty")
    password_file = None
    if "password_file" in entry:
        base = path.parent if path is not None else Path.cwd()  # relative to the config, like data_dir
        password_file = (base / Path(entry["password_file"]).expanduser()).resolve()
    folder = entry.get("folder", "INBOX")
    move_to = entry.get("move_to")
    for key, value in (("folder", folder), ("move_to", move_to)):
        if value is not None and (not value.strip() or len(value) > _IMAP_NAME_MAX):
            raise ConfigError(f"{prefix}{key}", f"must be a folder name of 1-{_IMAP_NAME_MAX} characters")
    if move_to is not None and move_to == folder:
        raise ConfigError(f"{prefix}move_to", f"must differ from folder ({folder!r})")
    poll_seconds = float(entry.get("poll_seconds", 60))
    if poll_seconds <= 0:
        raise ConfigError(f"{prefix}poll_seconds", "must be > 0 seconds")
    return ImapAccount(
        name=name,
        desk=entry["desk"].strip(),
        host=host,
        username=entry["username"],
        port=port,
        tls=tls,
        password_env=entry.get("password_env"),
        password_file=password_file,
        folder=folder,
        move_to=move_to,
        poll_seconds=poll_seconds,
        idle=entry.get("idle", True),
    )


def _parse_schedule(table: dict[str, Any]) -> Schedule:
    values = {}
    for key, default in vars(Schedule()).items():
        values[key] = float(table.get(key, default))
        if values[key] < 0.1:
            raise ConfigError(f"scheduler.{key}", f"must be at least 0.1 seconds, got {table[key]!r}")
    return Schedule(**values)


def _parse_retention(table: dict[str, Any]) -> float:
    days = float(table.get("retention_days", 0))
    if days < 0:
        raise ConfigError("spool.retention_days", f"must be >= 0 days (0 keeps raw mail forever), got {days}")
    return days


def _parse_hygiene(table: dict[str, Any]) -> Hygiene:
    default = Hygiene()
    per_hour = table.get("autoreply_per_hour", default.autoreply_per_hour)
    per_day = table.get("autoreply_per_day", default.autoreply_per_day)
    if per_hour < 0 or per_day < 0:
        raise ConfigError("hygiene.autoreply_per_hour", "limits must be >= 0 (0: no automatic answers)")
    blocked = table.get("blocked", default.blocked)
    if blocked not in BLOCKED_ACTIONS:
        raise ConfigError("hygiene.blocked", f'must be "archive" or "reject", got {blocked!r}')
    desk_per_hour = table.get("autoreply_desk_per_hour", default.autoreply_desk_per_hour)
    if desk_per_hour < 0:
        raise ConfigError(
            "hygiene.autoreply_desk_per_hour", "must be >= 0 (0: no automatic mail to customers)"
        )
    max_attachments = table.get("max_attachments_per_mail", default.max_attachments_per_mail)
    if max_attachments < 0:
        raise ConfigError("hygiene.max_attachments_per_mail", f"must be >= 0, got {max_attachments}")
    budget = table.get("max_processing_seconds", default.max_processing_seconds)
    if budget <= 0:
        raise ConfigError("hygiene.max_processing_seconds", f"must be > 0, got {budget}")
    return Hygiene(per_hour, per_day, blocked, desk_per_hour, max_attachments, float(budget))


def _parse_agents(table: dict[str, Any]) -> Agents:
    ids = table.get("trusted_authserv_ids", [])
    if not all(isinstance(i, str) and i.strip() and " " not in i.strip() for i in ids):
        raise ConfigError(
            "agents.trusted_authserv_ids", 'must be a list of host names, e.g. ["mx.example.com"]'
        )
    return Agents(tuple(i.strip().lower() for i in ids))


def config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("MAILD_CONFIG")
    return Path(from_env) if from_env else Path("maild.toml")


def load_config(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            "file", f'{path} not found: pass --config FILE or set MAILD_CONFIG (minimal: data_dir = "/dir")'
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("file", f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # tomllib decodes the whole file before parsing and lets this escape (a traceback, exit 1), e.g.
        # for a file saved as Latin-1 with an accented data_dir or ticket_url.
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            "file", f"{path} is not valid UTF-8 (line {line}); TOML files must be UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError("file", f"cannot read {path}: {exc.strerror}") from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path | None = None) -> Config:
    _check_keys(raw, _SCHEMA)
    if "data_dir" not in raw or not raw["data_dir"].strip():
        raise ConfigError("data_dir", 'missing: set data_dir = "/var/lib/maild" (where maild keeps its data)')
    data_dir = Path(raw["data_dir"]).expanduser()
    if not data_dir.is_absolute():
        base = path.parent if path is not None else Path.cwd()
        data_dir = (base / data_dir).resolve()
    database = raw.get("database", {})
    url = database.get("url") or f"sqlite:///{data_dir / 'maild.sqlite3'}"
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError("database.url", f"must be a sqlite:// or postgresql:// URL, got {url!r}")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    busy = database.get("busy_timeout_ms", 15000)
    if busy < 0:
        raise ConfigError("database.busy_timeout_ms", "must be >= 0")
    outgoing = raw.get("outgoing", {})
    smarthost = outgoing.get("smarthost")
    timeout = float(outgoing.get("timeout", 30))
    if timeout <= 0:
        raise ConfigError("outgoing.timeout", "must be > 0 seconds")
    retry_hours = float(outgoing.get("retry_hours", 120))
    if retry_hours <= 0:
        raise ConfigError("outgoing.retry_hours", "must be > 0 hours (Postfix gives up after 120)")
    return Config(
        path=path,
        data_dir=data_dir,
        database_url=url,
        busy_timeout_ms=busy,
        smarthost=_parse_hostport("outgoing.smarthost", smarthost) if smarthost else None,
        smtp_timeout=timeout,
        retry_hours=retry_hours,
        schedule=_parse_schedule(raw.get("scheduler", {})),
        hygiene=_parse_hygiene(raw.get("hygiene", {})),
        agents=_parse_agents(raw.get("agents", {})),
        ticket_url=raw.get("ticket_url", ""),
        listen=_parse_listen(raw.get("listen", {}), path),
        imap=_parse_imap(raw.get("imap", []), path),
        spool_retention_days=_parse_retention(raw.get("spool", {})),
    )
