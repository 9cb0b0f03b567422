"""LMTP and SMTP intake for `maild serve` (aiosmtpd), deliberately thin like Postfix's smtpd.

At the edge: RCPT of an address no desk has → 550 5.1.1; more than the size limit → 552 5.3.4; with
`[hygiene] blocked = "reject"`, a blocked envelope sender at MAIL and a blocked From header after DATA →
550 5.7.1 (the sending MTA tells its user: no backscatter from us); any database or disk trouble →
451 4.3.0, so the MTA keeps the mail and retries. At the end of DATA the raw
bytes are written and fsynced to the spool and one 'received' row per recipient is committed; only then
does the client get its 250 (LMTP: one reply per recipient). The pipeline runs afterwards in worker
threads (`on_spooled`): a crash in between leaves 'received' rows that `maild serve` processes at start.

Hostile clients, like Postfix's anvil and smtpd: per client address at most `max_connections_per_client`
open sessions and `max_connection_rate` connection attempts a minute (over: 421 4.7.0 at connect;
unix-socket clients and `client_limit_exceptions` are exempt); `command_timeout` of silence outside a
mail transaction, `timeout` inside one; during DATA a minimum rate (`min_data_rate` after
`min_data_rate_grace`), else 421 4.4.2 and the partial mail is dropped unacknowledged.

All database and disk work runs in an executor: the event loop only moves bytes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.config import Config, IPNetwork, Listen, ListenAddress
from maild.logs import get_logger
from maild.mail.addresses import base_address, normalize
from maild.mail.automatic import NULL_SENDER
from maild.mail.tokens import parse_bounce_address
from maild.outbound.blocklist import Rule, load_rules, match_rules
from maild.storage.changes import current_changes
from maild.storage.db import transaction
from maild.storage.models import DeskAddress
from maild.storage.spool import record_received, write_raw

log = get_logger("maild.listeners")

TRY_LATER = "451 4.3.0 Temporary local problem, try again later"
SHUTTING_DOWN = b"421 4.3.2 Service shutting down, try again later\r\n"
TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"
CLIENT_REFUSALS = {
    "max_connections_per_client": b"421 4.7.0 Too many connections from your address, try again later\r\n",
    "max_connection_rate": b"421 4.7.0 Connection rate limit exceeded, try again later\r\n",
}
IDLE_TOO_LONG = b"421 4.4.2 Timeout exceeded, closing connection\r\n"
DATA_TOO_SLOW = b"421 4.4.2 Data rate too low, closing connection\r\n"
RATE_WINDOW_SECONDS = 60.0
ABORT_AFTER_SECONDS = 10.0  # a closed session's last reply may take this long to be read, then it is cut
MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: a server must accept at least 100 per message
# aiosmtpd refuses DATA lines over 1000 bytes with a permanent 500: a sloppy client's unwrapped HTML would
# bounce. RFC 5321 asks senders to wrap; a helpdesk would rather read the mail than be right.
LINE_LENGTH_LIMIT = 1024 * 1024
# Every maildctl change of desks, their addresses or the blocklist bumps the change counter
# (storage/changes.py); the caches compare it at most this often, so a change reaches the intake within
# about this time (until then the route and blocked stages handle what slipped through).
CHANGE_CHECK_SECONDS = 1.0
# A full reload whatever the counter says: for rows written by other means than maildctl.
REFRESH_SECONDS = 300.0
BLOCKLIST_REFRESH_SECONDS = 300.0
HEADER_SCAN_BYTES = 64 * 1024


def describe(error: BaseException) -> str:
    """Type and first line of an error, short: log lines must not carry a mail (or a SQL statement)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def _head(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n", 0, HEADER_SCAN_BYTES)
    return raw[: end if end >= 0 else HEADER_SCAN_BYTES]


def message_id_of(raw: bytes) -> str:
    """The Message-ID header, for the log; only the header block is parsed."""
    value = BytesHeaderParser(policy=compat32).parsebytes(_head(raw)).get("Message-ID", "")
    return " ".join(str(value).split())[:300]


def from_addresses(raw: bytes) -> list[str]:
    """The addresses of the From header(s); only the header block is parsed."""
    values = BytesHeaderParser(policy=compat32).parsebytes(_head(raw)).get_all("From") or []
    return [address for _, address in getaddresses([str(v) for v in values]) if "@" in address]


class _Snapshot:
    """When a cache loaded from the database must load again: never loaded, older than `refresh_seconds`,
    or the change counter moved since (asked at most every `check_seconds`). Called from executor threads:
    at worst two of them both ask or both reload, which is harmless."""

    def __init__(
        self, factory: sessionmaker[DbSession], refresh_seconds: float, check_seconds: float
    ) -> None:
        self._factory = factory
        self._refresh_seconds = refresh_seconds
        self._check_seconds = check_seconds
        self._loaded_at: float | None = None
        self._checked_at = 0.0
        self._changes = 0

    def loaded(self, changes: int) -> None:
        """Record a load that read the counter as `changes` before it read the rows."""
        self._changes, self._loaded_at = changes, time.monotonic()
        self._checked_at = self._loaded_at

    def stale(self) -> bool:
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at > self._refresh_seconds:
            return True
        if now - self._checked_at < self._check_seconds:
            return False
        self._checked_at = now
        with self._factory() as session:
            return current_changes(session) != self._changes


class DeskAddresses:
    """Which envelope recipients belong to a desk.

    Hits come from memory: on SQLite every transaction, reads too, is BEGIN IMMEDIATE, so a query per RCPT
    would queue behind the pipeline's write transactions. The set is reloaded when maildctl changed desks
    (the change counter, asked at most every CHANGE_CHECK_SECONDS), every REFRESH_SECONDS and on SIGHUP, so
    a removed address is refused within about a second. A miss also asks the database, so an address
    added by other means is accepted at once. Blocking: call it in an executor."""

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        refresh_seconds: float = REFRESH_SECONDS,
        check_seconds: float = CHANGE_CHECK_SECONDS,
    ) -> None:
        self._factory = factory
        self._snapshot = _Snapshot(factory, refresh_seconds, check_seconds)
        self._known: frozenset[str] = frozenset()

    def refresh(self) -> int:
        with self._factory() as session:
            changes = current_changes(session)  # before the rows: a change in between reloads again
            known = frozenset(session.scalars(select(DeskAddress.address)))
        # Replaced whole, never mutated: readers in other threads see the old or the new set.
        self._known = known
        self._snapshot.loaded(changes)
        return len(known)

    def is_desk(self, address: str) -> bool:
        """`address` or its `local+token@domain` form is a desk's address, or it is the VERP return path of
        our outgoing mail (`bounces+<outbox id>-<mac>@<a desk's domain>`), where bounces come back."""
        base = base_address(address)
        if self._snapshot.stale():
            self.refresh()
        if base in self._known:
            return True
        if parse_bounce_address(address) is not None:
            domain = "@" + base.rpartition("@")[2]
            return any(known.endswith(domain) for known in self._known)
        with self._factory() as session:
            found = session.scalars(select(DeskAddress.id).where(DeskAddress.address == base)).first()
        if found is not None:
            self._known = self._known | {base}
        return found is not None


class BlockedSenders:
    """The blocklist as the intake sees it in reject mode: a snapshot in memory, reloaded like the desk
    addresses (the change counter, every `refresh_seconds`). Asking the database at every MAIL and DATA
    would queue each one behind the pipeline's write transactions on SQLite (see DeskAddresses); a stale
    snapshot costs little, since the blocked stage archives what slipped through. Blocking: call it in an
    executor."""

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        refresh_seconds: float = BLOCKLIST_REFRESH_SECONDS,
        check_seconds: float = CHANGE_CHECK_SECONDS,
    ) -> None:
        self._factory = factory
        self._snapshot = _Snapshot(factory, refresh_seconds, check_seconds)
        self._rules: tuple[Rule, ...] = ()

    def refresh(self) -> int:
        with self._factory() as session:
            changes = current_changes(session)
            rules = tuple(load_rules(session))
        self._rules = rules  # replaced whole: readers see old or new
        self._snapshot.loaded(changes)
        return len(rules)

    def find(self, addresses: Iterable[str]) -> tuple[str, Rule] | None:
        if self._snapshot.stale():
            self.refresh()
        return match_rules(self._rules, addresses)


@dataclass(frozen=True)
class Spooled:
    """A message made durable: one 'received' spool row per recipient, in RCPT order."""

    spool_ids: tuple[int, ...]
    recipients: tuple[str, ...]
    message_id: str
    size: int
    ingress: str


class Intake:
    """The aiosmtpd handler of every listener, LMTP and SMTP alike."""

    def __init__(
        self,
        cfg: Config,
        factory: sessionmaker[DbSession],
        addresses: DeskAddresses,
        executor: Executor,
        on_spooled: Callable[[Spooled], None],
    ) -> None:
        self._cfg = cfg
        self._factory = factory
        self._addresses = addresses
        self._executor = executor
        self._on_spooled = on_spooled
        self._blocked = BlockedSenders(factory)

    @property
    def _rejecting(self) -> bool:
        return self._cfg.hygiene.blocked == "reject"

    async def _blocked_sender(self, addresses: list[str]) -> tuple[str, Rule] | None:
        """The first blocked address of `addresses` (in the executor); exceptions propagate."""
        if not addresses:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._blocked.find, addresses)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # `MAIL FROM:<>` arrives as "<>": a bounce has no sender to block.
        if self._rejecting and "@" in address:
            try:
                found = await self._blocked_sender([address])
            except Exception as exc:
                log.warning("sender_check_failed", mail_from=address, error=describe(exc))
                return TRY_LATER
            if found is not None:
                log.info(
                    "sender_rejected",
                    mail_from=address,
                    entry=found[1].pattern,
                    code=550,
                    peer=_peer(session),
                )
                return f"550 5.7.1 <{address}>: sender not accepted"
        # A handle_MAIL hook owns the envelope's sender, as handle_RCPT owns its recipients.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            address.encode("utf-8")  # arguments arrive with surrogate escapes for bytes that are not UTF-8
        except UnicodeEncodeError:
            return "553 5.1.3 Malformed address"
        loop = asyncio.get_running_loop()
        try:
            known = await loop.run_in_executor(self._executor, self._addresses.is_desk, address)
        except Exception as exc:
            log.warning("recipient_check_failed", recipient=address, error=describe(exc))
            return TRY_LATER
        if not known:
            log.info("recipient_rejected", recipient=address, code=550, peer=_peer(session))
            return f"550 5.1.1 <{address}>: no such desk"
        envelope.rcpt_tos.append(address)  # a handle_RCPT hook owns the envelope's recipient list
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        lmtp = isinstance(server, LMTP)
        raw = envelope.original_content or b""  # decode_data=False: the bytes exactly as received
        recipients = tuple(envelope.rcpt_tos)
        started = time.perf_counter()
        if self._rejecting:
            refusal = await self._check_from(raw, envelope, session)
            if refusal is not None:  # nothing spooled
                return "\r\n".join([refusal] * len(recipients)) if lmtp else refusal
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._executor,
            self._spool,
            raw,
            recipients,
            "lmtp" if lmtp else "smtp",
            envelope.mail_from or NULL_SENDER,
        )
        # Whatever reached the spool is processed, even if the client hangs up before its 250.
        future.add_done_callback(self._hand_over)
        try:
            spooled = await asyncio.shield(future)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "spool_failed",
                ingress="lmtp" if lmtp else "smtp",
                recipients=list(recipients),
                size=len(raw),
                error=describe(exc),
                duration_ms=_ms_since(started),
            )
            return "\r\n".join([TRY_LATER] * len(recipients)) if lmtp else TRY_LATER
        log.info(
            "accepted",
            ingress=spooled.ingress,
            message_id=spooled.message_id,
            spool_ids=list(spooled.spool_ids),
            recipients=list(recipients),
            mail_from=envelope.mail_from,
            size=spooled.size,
            duration_ms=_ms_since(started),
        )
        if lmtp:  # RFC 2033: one reply per accepted recipient, in RCPT order
            return "\r\n".join(
                f"250 2.0.0 <{rcpt}> OK, spooled as {sid}"
                for rcpt, sid in zip(recipients, spooled.spool_ids, strict=True)
            )
        return f"250 2.0.0 OK, spooled as {','.join(map(str, spooled.spool_ids))}"

    async def _check_from(self, raw: bytes, envelope: Envelope, session: Session) -> str | None:
        """Reject mode, after DATA: the refusal when a From address is blocked, else None."""
        try:
            found = await self._blocked_sender(from_addresses(raw))
        except Exception as exc:
            log.warning("sender_check_failed", mail_from=envelope.mail_from, error=describe(exc))
            return TRY_LATER
        if found is None:
            return None
        address, rule = found
        log.info(
            "sender_rejected",
            header_from=address,
            mail_from=envelope.mail_from,
            recipients=list(envelope.rcpt_tos),
            entry=rule.pattern,
            code=550,
            peer=_peer(session),
        )
        return f"550 5.7.1 <{address}>: sender not accepted"

    async def handle_exception(self, error: Exception) -> str:
        # Without this aiosmtpd answers a permanent 500 carrying the error text: the MTA would bounce.
        log.error("session_error", error=describe(error))
        return TRY_LATER

    def _spool(self, raw: bytes, recipients: tuple[str, ...], ingress: str, mail_from: str) -> Spooled:
        """Blocking: the bytes fsynced first, then the rows committed (one transaction for all)."""
        digest = write_raw(self._cfg.spool_dir, raw)
        with transaction(self._factory) as session:
            ids = tuple(
                record_received(session, digest, len(raw), normalize(rcpt), ingress, mail_from).id
                for rcpt in recipients
            )
        return Spooled(ids, recipients, message_id_of(raw), len(raw), ingress)

    def _hand_over(self, future: asyncio.Future[Spooled]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        try:
            self._on_spooled(future.result())
        except Exception as exc:  # the rows stay 'received': the recovery sweep processes them
            log.error("hand_over_failed", error=describe(exc))


def _peer(session: Session) -> str:
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer or "unix")


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def client_address(peer: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a TCP peer (an IPv4-mapped IPv6 address as IPv4); None for a unix socket."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(str(peer[0]).partition("%")[0])  # without an IPv6 zone
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener: the same client as over IPv4
    return address


class ClientLimits:
    """Per client address, like Postfix's anvil: its open sessions and its connection attempts in the last
    minute. Shared by all listeners; only the event loop calls it, so no lock.

    Memory stays bounded: an address is forgotten when its last session closes and its newest attempt is
    a minute old, and at most `rate` timestamps are kept per address."""

    def __init__(
        self,
        per_client: int,
        rate: int,
        exceptions: tuple[IPNetwork, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client  # 0: no limit
        self.rate = rate  # per RATE_WINDOW_SECONDS; 0: no limit
        self.exceptions = exceptions
        self._clock = clock
        self._open: dict[str, int] = {}
        self._attempts: dict[str, deque[float]] = {}
        self._pruned_at = clock()

    @classmethod
    def from_config(cls, listen: Listen) -> ClientLimits:
        return cls(
            listen.max_connections_per_client, listen.max_connection_rate, listen.client_limit_exceptions
        )

    def key(self, peer: Any) -> str | None:
        """The address the limits count `peer` under; None when they do not apply to it: a unix-socket
        client (only the MTA's group can connect) or an address in `client_limit_exceptions`."""
        address = client_address(peer)
        if address is None or any(address in network for network in self.exceptions):
            return None
        return str(address)

    def check(self, client: str) -> tuple[str, int] | None:
        """Count a connection attempt from `client`; the limit it exceeds (its config key and value), or
        None. Refused attempts count too: a client that keeps hammering stays refused until it pauses."""
        now = self._clock()
        self._prune(now)
        if self.rate:
            attempts = self._attempts.get(client)
            if attempts is None:
                attempts = self._attempts[client] = deque(maxlen=self.rate)
            # The newest `rate` attempts are kept: all of them within the window makes this one too many.
            over = len(attempts) == self.rate and now - attempts[0] < RATE_WINDOW_SECONDS
            attempts.append(now)
            if over:
                return "max_connection_rate", self.rate
        if self.per_client and self._open.get(client, 0) >= self.per_client:
            return "max_connections_per_client", self.per_client
        return None

    def opened(self, client: str) -> None:
        self._open[client] = self._open.get(client, 0) + 1

    def closed(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)

    def open_from(self, client: str) -> int:
        return self._open.get(client, 0)

    def tracked(self) -> int:
        """How many addresses are remembered (for tests: memory stays bounded)."""
        return len(self._open.keys() | self._attempts.keys())

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < RATE_WINDOW_SECONDS:
            return
        self._pruned_at = now
        for client in [c for c, a in self._attempts.items() if not a or now - a[-1] >= RATE_WINDOW_SECONDS]:
            del self._attempts[client]


class Connections:
    """The open sessions of all listeners: counted against max_connections, closed on shutdown."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: set[_Tracked] = set()

    def admit(self, session: _Tracked) -> bool:
        if len(self.open) >= self.limit:
            return False
        self.open.add(session)
        return True

    def release(self, session: _Tracked) -> None:
        self.open.discard(session)

    async def drain(self, grace_seconds: float) -> int:
        """Close idle sessions now (421); one in a mail transaction may finish it within the grace time.

        Returns how many sessions were cut off in the middle of a transaction (their clients retry)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        cut_off = 0
        while self.open:
            late = loop.time() >= deadline
            for session in list(self.open):
                if session.closing:
                    continue
                if not session.in_transaction:
                    session.shut(SHUTTING_DOWN)
                elif late:
                    session.shut(SHUTTING_DOWN)
                    cut_off += 1
            if late and all(s.closing for s in self.open):
                break
            await asyncio.sleep(0.05)
        return cut_off


class _Tracked(SMTP):
    """What maild adds to aiosmtpd's protocols: the connection limits, the timeouts by phase and the
    minimum DATA rate, shutdown, enhanced status codes."""

    line_length_limit = LINE_LENGTH_LIMIT

    def __init__(
        self,
        handler: Intake,
        *,
        connections: Connections,
        client_limits: ClientLimits,
        command_timeout: float,
        min_data_rate: int = 0,
        min_data_rate_grace: float = 30.0,
        **kwargs: Any,
    ) -> None:
        self._connections = connections
        self._client_limits = client_limits
        self._limited_as: str | None = None  # the address counted in client_limits while open
        self._command_timeout = command_timeout
        self._min_data_rate = min_data_rate
        self._data_grace = min_data_rate_grace
        # While DATA is read (from our 354 to the client's final dot): when it began, the bytes so far, and
        # when the last ones came (event-loop time).
        self._data_started: float | None = None
        self._data_bytes = 0
        self._data_last = 0.0
        self._timer_in_transaction = False  # the phase the idle timer was last started for
        self._refused = False
        self._lost = False
        self.closing = False
        super().__init__(handler, **kwargs)

    @property
    def in_transaction(self) -> bool:
        """Between MAIL and the reply to DATA (the envelope is reset just before that reply is written)."""
        return self.envelope is not None and self.envelope.mail_from is not None

    def shut(self, reply: bytes) -> None:
        self.closing = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # closed already (QUIT, timeout, client gone): connection_lost is on its way
        transport.write(reply)  # type: ignore[attr-defined]
        transport.close()
        # close() waits until what was written is sent: a client that never reads would keep its slot.
        self.loop.call_later(ABORT_AFTER_SECONDS, self._abort, transport)

    def _abort(self, transport: asyncio.BaseTransport) -> None:
        if not self._lost:
            log.info("client_aborted", client=_peer(self.session))
            transport.abort()  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS with the TLS transport: that is the same connection.
        if self.transport is None:
            refusal = self._admit(transport)
            if refusal is not None:
                self._refused = True
                transport.write(refusal)  # type: ignore[attr-defined]
                transport.close()
                return
        super().connection_made(transport)

    def _admit(self, transport: asyncio.BaseTransport) -> bytes | None:
        """The per-client limits first (so the log names the client that hogs), then max_connections."""
        peer = transport.get_extra_info("peername")
        client = self._client_limits.key(peer)
        exceeded = self._client_limits.check(client) if client is not None else None
        if exceeded is not None:
            limit, value = exceeded
            self._log_limited(peer, limit, value)
            return CLIENT_REFUSALS[limit]
        if not self._connections.admit(self):
            self._log_limited(peer, "max_connections", self._connections.limit)
            return TOO_MANY_CONNECTIONS
        if client is not None:
            self._client_limits.opened(client)
            self._limited_as = client
        return None

    def _log_limited(self, peer: Any, limit: str, value: int, **fields: Any) -> None:
        address = client_address(peer)
        log.warning(
            "client_limited",
            client=str(address) if address is not None else "unix",
            limit=limit,
            value=value,
            protocol="lmtp" if isinstance(self, LMTP) else "smtp",
            **fields,
        )

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return  # aiosmtpd never saw this connection
        self._lost = True
        self._connections.release(self)
        if self._limited_as is not None:
            self._client_limits.closed(self._limited_as)
            self._limited_as = None
        self._data_started = None
        super().connection_lost(error)

    # --- timeouts by phase and the DATA rate ---------------------------------------------------------
    # aiosmtpd has one timer, restarted when a valid command arrives. Here it runs for `command_timeout`
    # outside a mail transaction and `timeout` inside one, restarted also when the phase changes; while
    # DATA is read the timer is ours: it fires at the earlier of `timeout` of silence (data arriving
    # counts) and the rate budget running out.

    def _reset_timeout(self, duration: float | None = None) -> None:
        if self._data_started is not None:
            return  # reading DATA: the data deadline governs
        self._timer_in_transaction = self.in_transaction
        if duration is None and not self._timer_in_transaction:
            duration = self._command_timeout
        super()._reset_timeout(duration)

    def _timeout_cb(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        phase = "transaction" if self.in_transaction else "command"
        seconds = self._timeout_duration if self.in_transaction else self._command_timeout
        log.info("client_timeout", client=_peer(self.session), phase=phase, seconds=seconds)
        self.shut(IDLE_TOO_LONG)  # aiosmtpd would close without a word; RFC 5321 4.2.2: 421 when closing

    def data_received(self, data: bytes) -> None:
        if self._data_started is not None:
            self._data_bytes += len(data)
            self._data_last = self.loop.time()
        super().data_received(data)

    def _start_data(self) -> None:
        now = self.loop.time()
        self._data_started, self._data_bytes, self._data_last = now, 0, now
        self._arm_data_timer()

    def _end_data(self) -> None:
        if self._data_started is not None:
            self._data_started = None
            self._reset_timeout()

    def _data_deadlines(self) -> tuple[float, float | None]:
        """When the client will have been silent for `timeout`; when it will have fallen
        `min_data_rate_grace` seconds behind `min_data_rate` (None: no minimum)."""
        assert self._data_started is not None
        silent = self._data_last + self._timeout_duration
        if not self._min_data_rate:
            return silent, None
        return silent, self._data_started + self._data_grace + self._data_bytes / self._min_data_rate

    def _arm_data_timer(self) -> None:
        # Armed at the deadline known now; data arriving meanwhile only moves it later, so the callback
        # re-arms instead of the timer being restarted for every chunk read.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        silent, behind = self._data_deadlines()
        deadline = silent if behind is None else min(silent, behind)
        self._timeout_handle = self.loop.call_at(deadline, self._data_timer)

    def _data_timer(self) -> None:
        if self._data_started is None or self.transport is None or self.transport.is_closing():
            return
        silent, behind = self._data_deadlines()
        now = self.loop.time()
        if behind is not None and now >= behind:
            elapsed = now - self._data_started
            self._log_limited(
                self.session.peer if self.session else None,
                "min_data_rate",
                self._min_data_rate,
                received=self._data_bytes,
                seconds=round(elapsed, 1),
            )
            self.shut(DATA_TOO_SLOW)  # the partial mail is dropped with the session: never acknowledged
        elif now >= silent:
            log.info(
                "client_timeout", client=_peer(self.session), phase="data", seconds=self._timeout_duration
            )
            self.shut(IDLE_TOO_LONG)
        else:
            self._arm_data_timer()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "DATA":  # the final dot has come: the rest is our work, not the client's
            self._end_data()
        return await super()._call_handler_hook(command, *args)

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = self._with_enhanced_code(status)
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        if text.startswith("354"):
            self._start_data()  # before the write: the client may answer at once
        else:
            self._end_data()  # a refusal of the data (too long, too much) ends its reading too
        await super().push(status)
        # MAIL accepted, or the transaction over (reply to DATA, RSET): the other timeout from now on.
        # Only then: as in aiosmtpd, a reply to junk (an empty line, say) does not restart the timer.
        open_ = self.transport is not None and not self.transport.is_closing()
        if open_ and self._data_started is None and self.in_transaction != self._timer_in_transaction:
            self._reset_timeout()

    def _with_enhanced_code(self, status: str) -> str:
        """aiosmtpd's own size replies carry no enhanced code, and after DATA it answers an LMTP client
        once instead of once per recipient (the client would wait for the rest until it times out)."""
        if status.startswith("552 Error: message size exceeds"):  # MAIL FROM with SIZE=
            return f"552 5.3.4 Message size exceeds the limit of {self.data_size_limit} bytes"
        if status == "552 Error: Too much mail data":
            return self._after_data(
                f"552 5.3.4 Message size exceeds the limit of {self.data_size_limit} bytes"
            )
        if status.startswith("500 Line too long"):
            return self._after_data(f"500 5.5.2 Line longer than {LINE_LENGTH_LIMIT} bytes")
        return status

    def _after_data(self, reply: str) -> str:
        if isinstance(self, LMTP) and self.envelope is not None and self.envelope.rcpt_tos:
            return "\r\n".join([reply] * len(self.envelope.rcpt_tos))
        return reply


class SMTPSession(_Tracked):
    pass


class LMTPSession(_Tracked, LMTP):
    pass


@dataclass(frozen=True)
class Listener:
    protocol: str  # "lmtp" | "smtp"
    address: ListenAddress
    server: asyncio.Server

    @property
    def bound(self) -> str:
        """The address as bound (the resolved host and port), for the log."""
        if self.address.path is not None:
            return str(self.address)
        host, port = self.server.sockets[0].getsockname()[:2]
        return str(ListenAddress(host, port))


def _socket_in_use(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def _unix_server(factory: Callable[[], _Tracked], path: Path) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    if os.path.lexists(path):
        if not path.is_socket():
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        # asyncio would remove the socket of a running instance as readily as a stale one.
        if _socket_in_use(path):
            raise OSError(errno.EADDRINUSE, f"{path} is in use by another process")
    server = await loop.create_unix_server(factory, str(path))
    # The MTA's group (e.g. postfix) gets in; other local users cannot inject mail.
    os.chmod(path, 0o660)
    return server


async def start_listeners(
    cfg: Config,
    handler: Intake,
    connections: Connections,
    tls_context: ssl.SSLContext | None,
    client_limits: ClientLimits | None = None,
) -> list[Listener]:
    """Bind every configured address in the running loop. On a failure the ones bound are closed again.

    One `client_limits` counts for all listeners: a client's LMTP and SMTP sessions add up."""
    loop = asyncio.get_running_loop()
    common: dict[str, Any] = {
        "connections": connections,
        "client_limits": client_limits or ClientLimits.from_config(cfg.listen),
        "command_timeout": cfg.listen.command_timeout,
        "min_data_rate": cfg.listen.min_data_rate,
        "min_data_rate_grace": cfg.listen.min_data_rate_grace,
        "data_size_limit": cfg.listen.max_message_bytes,
        "enable_SMTPUTF8": True,  # aiosmtpd's default is off: 8-bit addresses would get 500
        "hostname": socket.getfqdn(),  # once: aiosmtpd would resolve it for every connection
        "ident": "maild",
        "timeout": cfg.listen.timeout,
        "loop": loop,
    }
    plan: list[tuple[str, ListenAddress, type[_Tracked], ssl.SSLContext | None]] = [
        *(("lmtp", a, LMTPSession, None) for a in cfg.listen.lmtp),
        *(("smtp", a, SMTPSession, tls_context) for a in cfg.listen.smtp),
    ]
    listeners: list[Listener] = []
    try:
        for protocol, address, session_class, tls in plan:

            def factory(cls: type[_Tracked] = session_class, tls: ssl.SSLContext | None = tls) -> _Tracked:
                return cls(handler, tls_context=tls, **common)

            if address.path is not None:
                server = await _unix_server(factory, address.path)
            else:
                server = await loop.create_server(factory, address.host, address.port, reuse_address=True)
            listeners.append(Listener(protocol, address, server))
    except BaseException:
        await stop_listeners(listeners)
        raise
    return listeners


async def stop_listeners(listeners: list[Listener]) -> None:
    """Stop accepting; open sessions are left to `Connections.drain`."""
    for listener in listeners:
        listener.server.close()
        if listener.address.path is not None:
            with contextlib.suppress(FileNotFoundError):
                listener.address.path.unlink()
