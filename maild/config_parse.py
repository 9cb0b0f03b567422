"""Reading and validating the TOML file into the dataclasses of maild.config_types: unknown keys and wrong
types are errors (`ConfigError` names the key), defaults fill the rest."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any

from maild.config_types import (
    BLOCKED_ACTIONS,
    MAX_WORKERS,
    Agents,
    Config,
    ConfigError,
    Hygiene,
    ImapAccount,
    IPNetwork,
    Listen,
    ListenAddress,
    Schedule,
    Webhooks,
)
from maild.config_web import parse_web

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
        "quarantine_digest_seconds": (int, float),
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
    "web": {"listen": str, "public_url": str, "api_requests_per_minute": int},
    "webhooks": {"timeout": (int, float), "max_attempts": int, "poll_seconds": (int, float)},
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
        else:
            _check_kind(name, value, expected)


def _check_kind(name: str, value: Any, expected: Any) -> None:
    # bool is an int in Python: `port = true` must not pass as port 1, nor `tls = 1` as a bool.
    if (expected is bool) != isinstance(value, bool) or not isinstance(value, expected):
        kind = _KINDS.get(expected) or f"a {expected.__name__}"
        raise ConfigError(name, f"must be {kind}, got {value!r}")


def _positive_seconds(key: str, value: float) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise ConfigError(key, "must be > 0 seconds")
    return seconds


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
    lmtp, smtp = _listen_addresses(table, default)
    sizes = _listen_sizes(table, default)
    timeout = _positive_seconds("listen.timeout", table.get("timeout", default.timeout))
    client_limits = {}
    for key in ("max_connections_per_client", "max_connection_rate", "min_data_rate"):
        client_limits[key] = table.get(key, getattr(default, key))
        if client_limits[key] < 0:
            raise ConfigError(f"listen.{key}", f"must be >= 0 (0: no limit), got {client_limits[key]}")
    command_timeout = _command_timeout(table, default, timeout)
    grace = _positive_seconds(
        "listen.min_data_rate_grace", table.get("min_data_rate_grace", default.min_data_rate_grace)
    )
    exceptions = _parse_networks(
        "listen.client_limit_exceptions",
        table.get("client_limit_exceptions", [str(n) for n in default.client_limit_exceptions]),
    )
    tls_cert, tls_key = _listen_tls(table, path)
    return Listen(
        lmtp=lmtp,
        smtp=smtp,
        max_message_bytes=sizes["max_message_bytes"],
        max_connections=sizes["max_connections"],
        timeout=timeout,
        workers=sizes["workers"],
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_connections_per_client=client_limits["max_connections_per_client"],
        max_connection_rate=client_limits["max_connection_rate"],
        client_limit_exceptions=exceptions,
        command_timeout=command_timeout,
        min_data_rate=client_limits["min_data_rate"],
        min_data_rate_grace=grace,
    )


def _listen_addresses(
    table: dict[str, Any], default: Listen
) -> tuple[tuple[ListenAddress, ...], tuple[ListenAddress, ...]]:
    if "lmtp" in table or "smtp" in table:
        # The listeners named are the ones that run: `lmtp = "unix:/…"` alone means no SMTP port.
        lmtp = _parse_listen_addresses("listen.lmtp", table.get("lmtp", []))
        smtp = _parse_listen_addresses("listen.smtp", table.get("smtp", []))
    else:
        lmtp, smtp = default.lmtp, default.smtp
    shared = set(lmtp) & set(smtp)
    if shared:
        raise ConfigError("listen.smtp", f"{min(map(str, shared))} is also an LMTP address")
    return lmtp, smtp


def _listen_sizes(table: dict[str, Any], default: Listen) -> dict[str, int]:
    """max_message_bytes, max_connections and workers, each at least its least sensible value."""
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
        raise ConfigError("listen.workers", f"must be <= {MAX_WORKERS} (one parse process each)")
    return values


def _command_timeout(table: dict[str, Any], default: Listen, timeout: float) -> float:
    # A `timeout` below the default shortens the idle time before MAIL too, unless that is set.
    command_timeout = _positive_seconds(
        "listen.command_timeout", table.get("command_timeout", min(default.command_timeout, timeout))
    )
    if command_timeout > timeout:
        raise ConfigError(
            "listen.command_timeout", f"must be <= listen.timeout ({timeout:g} s), got {command_timeout:g}"
        )
    return command_timeout


def _listen_tls(table: dict[str, Any], path: Path | None) -> tuple[Path | None, Path | None]:
    """The certificate and key files, both or neither."""
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
    return tls["tls_cert"], tls["tls_key"]


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
    _check_imap_keys(prefix, name, entry)
    host, tls, port = _imap_server(prefix, entry)
    password_file = _imap_password_file(prefix, entry, path)
    folder, move_to = _imap_folders(prefix, entry)
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
        poll_seconds=_positive_seconds(f"{prefix}poll_seconds", entry.get("poll_seconds", 60)),
        idle=entry.get("idle", True),
    )


def _check_imap_keys(prefix: str, name: str, entry: dict[str, Any]) -> None:
    """No password, no unknown key, every value of its kind, the required ones there."""
    if "password" in entry:
        raise ConfigError(
            f"{prefix}password",
            "not allowed: keep the password out of this file (password_env or password_file)",
        )
    _check_keys(entry, _IMAP_SCHEMA, prefix)
    if len(name) > _IMAP_NAME_MAX or name != name.strip():
        raise ConfigError(
            f"{prefix}name", f"must be at most {_IMAP_NAME_MAX} characters, without outer spaces"
        )
    for key in ("desk", "host", "username"):
        if not entry.get(key, "").strip():
            raise ConfigError(f"{prefix}{key}", "missing: required in every [[imap]] entry")


def _imap_server(prefix: str, entry: dict[str, Any]) -> tuple[str, bool, int]:
    """The host, whether it is IMAPS, and the port."""
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
    return host, tls, port


def _imap_password_file(prefix: str, entry: dict[str, Any], path: Path | None) -> Path | None:
    """Exactly one of password_env and password_file; the file's absolute path when it is that one."""
    secrets = [key for key in ("password_env", "password_file") if key in entry]
    if len(secrets) != 1:
        problem = "give only one of" if secrets else "missing: give one of"
        raise ConfigError(f"{prefix}password_env", f"{problem} password_env and password_file")
    if not entry[secrets[0]].strip():
        raise ConfigError(f"{prefix}{secrets[0]}", "must not be empty")
    if "password_file" not in entry:
        return None
    base = path.parent if path is not None else Path.cwd()  # relative to the config, like data_dir
    return (base / Path(entry["password_file"]).expanduser()).resolve()


def _imap_folders(prefix: str, entry: dict[str, Any]) -> tuple[str, str | None]:
    """The folder polled, and the one mail is moved to after spooling (None: marked \\Seen instead)."""
    folder = entry.get("folder", "INBOX")
    move_to = entry.get("move_to")
    for key, value in (("folder", folder), ("move_to", move_to)):
        if value is not None and (not value.strip() or len(value) > _IMAP_NAME_MAX):
            raise ConfigError(f"{prefix}{key}", f"must be a folder name of 1-{_IMAP_NAME_MAX} characters")
    if move_to is not None and move_to == folder:
        raise ConfigError(f"{prefix}move_to", f"must differ from folder ({folder!r})")
    return folder, move_to


def _parse_schedule(table: dict[str, Any]) -> Schedule:
    values = {}
    for key, default in vars(Schedule()).items():
        values[key] = float(table.get(key, default))
        if values[key] < 0.1:
            raise ConfigError(f"scheduler.{key}", f"must be at least 0.1 seconds, got {table[key]!r}")
    return Schedule(**values)


def _parse_webhooks(table: dict[str, Any]) -> Webhooks:
    default = Webhooks()
    attempts = table.get("max_attempts", default.max_attempts)
    if attempts < 1:
        raise ConfigError("webhooks.max_attempts", f"must be at least 1, got {attempts}")
    return Webhooks(
        timeout=_positive_seconds("webhooks.timeout", table.get("timeout", default.timeout)),
        max_attempts=attempts,
        poll_seconds=_positive_seconds(
            "webhooks.poll_seconds", table.get("poll_seconds", default.poll_seconds)
        ),
    )


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
    timeout = _positive_seconds("outgoing.timeout", outgoing.get("timeout", 30))
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
        web=parse_web(raw.get("web", {})),
        webhooks=_parse_webhooks(raw.get("webhooks", {})),
    )
