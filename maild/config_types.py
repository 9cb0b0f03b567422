"""What the configuration holds: one frozen dataclass per table, the whole `Config`, and `ConfigError`.

maild.config_parse reads the TOML file into these; code elsewhere imports them from maild.config.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

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
    workers: int = 2  # parse processes of the pipeline (maild.ingress.parse_pool)
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
    # At most one quarantine digest per desk this often (maild.tickets.quarantine_digest; the job itself
    # looks every minute, so a desk's first quarantine in a while is told within one).
    quarantine_digest_seconds: float = 900.0


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


@dataclass(frozen=True)
class Web:
    """The `[web]` table: the customers' pages. No `listen`: `maild serve` runs no web listener (the links
    are still made from `public_url`, for an instance that serves them)."""

    listen: ListenAddress | None = None
    public_url: str = ""  # what customers' links start with, without a trailing slash
    api_requests_per_minute: int = 120  # the JSON API's limit per token (issue 19); over it: 429


@dataclass(frozen=True)
class Webhooks:
    """The `[webhooks]` table: how `maild serve` delivers webhook POSTs (maild.outbound.webhook_sender)."""

    timeout: float = 10.0  # seconds for one POST, connecting included; over it the attempt failed
    max_attempts: int = 10  # then the delivery is failed (`maildctl webhook redeliver` queues it again)
    poll_seconds: float = 2.0  # how often the sender looks for due deliveries (the pipeline queues them)


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
    web: Web = Web()
    webhooks: Webhooks = Webhooks()

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
