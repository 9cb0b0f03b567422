"""One TOML file configures maild: `--config`, else `MAILD_CONFIG`, else `./maild.toml`.

Only `data_dir` is required; everything else has an embedded default (SQLite under the data dir,
outgoing mail to `<data_dir>/outgoing` as a Maildir). Validation is strict so that a typo in a key is
reported instead of silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EX_CONFIG = 78


class ConfigError(Exception):
    """An invalid configuration: names the key and the problem in one line."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config: {key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class Config:
    path: Path | None
    data_dir: Path
    database_url: str
    busy_timeout_ms: int
    smarthost: tuple[str, int] | None
    smtp_timeout: float
    ticket_url: str

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
    "outgoing": {"smarthost": str, "timeout": (int, float)},
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
            kind = "a number" if expected == (int, float) else f"a {expected.__name__}"
            raise ConfigError(name, f"must be {kind}, got {value!r}")


def _parse_hostport(key: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f'must be "host:port", got {value!r}')
    return host.strip("[]"), int(port)


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
    return Config(
        path=path,
        data_dir=data_dir,
        database_url=url,
        busy_timeout_ms=busy,
        smarthost=_parse_hostport("outgoing.smarthost", smarthost) if smarthost else None,
        smtp_timeout=timeout,
        ticket_url=raw.get("ticket_url", ""),
    )
