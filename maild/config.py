"""One TOML file configures maild: `--config`, else `MAILD_CONFIG`, else `./maild.toml`.

Only `data_dir` is required; everything else has an embedded default (SQLite under the data dir,
outgoing mail to `<data_dir>/outgoing` as a Maildir). Validation is strict so that a typo in a key is
reported instead of silently ignored.

maild.config_types holds what a configuration is (the dataclasses, `ConfigError`); maild.config_parse
reads and validates the file. Import both from here: `from maild.config import Config, load_config`.
"""

from __future__ import annotations

from maild.config_parse import config_path, load_config, parse_config
from maild.config_types import (
    BLOCKED_ACTIONS,
    EX_CONFIG,
    LOOPBACK_NETWORKS,
    MAX_WORKERS,
    Agents,
    Config,
    ConfigError,
    Hygiene,
    ImapAccount,
    IPNetwork,
    Listen,
    ListenAddress,
    MiB,
    Schedule,
    Web,
    Webhooks,
    check_imap_secrets,
)

__all__ = [
    "BLOCKED_ACTIONS",
    "EX_CONFIG",
    "LOOPBACK_NETWORKS",
    "MAX_WORKERS",
    "Agents",
    "Config",
    "ConfigError",
    "Hygiene",
    "IPNetwork",
    "ImapAccount",
    "Listen",
    "ListenAddress",
    "MiB",
    "Schedule",
    "Web",
    "Webhooks",
    "check_imap_secrets",
    "config_path",
    "load_config",
    "parse_config",
]
