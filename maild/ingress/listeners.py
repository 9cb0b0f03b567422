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

DATA is streamed to a temporary spool file as it arrives (a mail's size costs disk, not memory); the
handler gets that file. Fsyncs and database work run in threads: the event loop only moves bytes.

Here: the protocol classes (what maild adds to aiosmtpd's) and binding the listeners. The handler is
maild.ingress.intake, the limits maild.ingress.connection_limits, the desk address and blocklist caches
maild.ingress.intake_caches."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP

from maild.config import Config, ListenAddress
from maild.ingress.connection_limits import (
    SHUTTING_DOWN,
    ClientLimits,
    Connections,
    client_address,
    peer_label,
)
from maild.ingress.headers import HEADER_SCAN_BYTES, message_id_of
from maild.ingress.intake import MAX_RECIPIENTS, TRY_LATER, DotReader, Intake, Spooled, StreamedEnvelope
from maild.ingress.intake_caches import BlockedSenders, DeskAddresses
from maild.ingress.log_fields import describe
from maild.logs import get_logger
from maild.storage.spool import SpoolWriter

# Importable from here as before the intake was split up (tests, older callers).
__all__ = [
    "ABORT_AFTER_SECONDS",
    "HEADER_SCAN_BYTES",
    "MAX_RECIPIENTS",
    "SHUTTING_DOWN",
    "TRY_LATER",
    "BlockedSenders",
    "ClientLimits",
    "Connections",
    "DeskAddresses",
    "Intake",
    "Listener",
    "Spooled",
    "describe",
    "message_id_of",
    "start_listeners",
    "stop_listeners",
]

log = get_logger("maild.listeners")

TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"
CLIENT_REFUSALS = {
    "max_connections_per_client": b"421 4.7.0 Too many connections from your address, try again later\r\n",
    "max_connection_rate": b"421 4.7.0 Connection rate limit exceeded, try again later\r\n",
}
IDLE_TOO_LONG = b"421 4.4.2 Timeout exceeded, closing connection\r\n"
DATA_TOO_SLOW = b"421 4.4.2 Data rate too low, closing connection\r\n"
ABORT_AFTER_SECONDS = 10.0  # a closed session's last reply may take this long to be read, then it is cut
# aiosmtpd refuses DATA lines over 1000 bytes with a permanent 500: a sloppy client's unwrapped HTML would
# bounce. RFC 5321 asks senders to wrap; a helpdesk would rather read the mail than be right.
LINE_LENGTH_LIMIT = 1024 * 1024
READ_BYTES = 256 * 1024  # DATA is read in chunks of what has arrived, not line by line
TOO_MUCH = "552 Error: Too much mail data"  # aiosmtpd's replies, rewritten in _with_enhanced_code
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"


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
        self._handler = handler
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
            log.info("client_aborted", client=peer_label(self.session))
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
        log.info("client_timeout", client=peer_label(self.session), phase=phase, seconds=seconds)
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
                "client_timeout",
                client=peer_label(self.session),
                phase="data",
                seconds=self._timeout_duration,
            )
            self.shut(IDLE_TOO_LONG)
        else:
            self._arm_data_timer()

    def _create_envelope(self) -> StreamedEnvelope:
        return StreamedEnvelope()

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's smtp_DATA, the data streamed to a spool file instead of collected in memory."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert isinstance(self.envelope, StreamedEnvelope)
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        try:
            writer: SpoolWriter | None = SpoolWriter(self._handler.spool_dir, HEADER_SCAN_BYTES)
        except OSError as exc:  # read the data all the same, then 451: the client can tell what happened
            self._log_spool_failed(exc)
            writer = None
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            refusal = await self._receive_data(writer)
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        if refusal is None and writer is not None:
            try:
                self.envelope.spool_file = writer.finish()  # the last buffered bytes written: may fail
            except OSError as exc:
                self._log_spool_failed(exc)
                writer.discard()
                writer = None
        if refusal is not None or writer is None:
            if writer is not None:
                writer.discard()
            if refusal != "":  # "": the client went away
                await self.push(self._after_data(TRY_LATER) if refusal is None else refusal)
            self._set_post_data_state()
            return
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _receive_data(self, writer: SpoolWriter | None) -> str | None:
        """Up to the lone dot, into `writer`: None, else the refusal to answer after it (RFC 5321 4.2.5:
        too much, too long, the spool failing) or "" when the client left."""
        reader = DotReader(self.line_length_limit)
        limit, received, refusal = self.data_size_limit, 0, None
        while not reader.ended:
            try:
                chunk = await self._reader.read(READ_BYTES)
            except asyncio.CancelledError:  # the connection got reset during DATA
                self._writer.close()
                raise
            if not chunk:
                return ""
            data, wire = reader.feed(chunk)
            if reader.after:  # back where aiosmtpd reads the next command from (StreamReader has no unread)
                self._reader._buffer[0:0] = reader.after  # type: ignore[attr-defined]
            received += wire
            if refusal is None and (reader.too_long or (limit and received > limit)):
                refusal = TOO_LONG if reader.too_long else TOO_MUCH
            if refusal is None and writer is not None and data:
                try:
                    writer.write(data)
                except OSError as exc:
                    self._log_spool_failed(exc)
                    refusal = self._after_data(TRY_LATER)
        return refusal

    def _log_spool_failed(self, error: Exception) -> None:
        assert self.envelope is not None
        protocol = "lmtp" if isinstance(self, LMTP) else "smtp"
        log.error("spool_failed", ingress=protocol, recipients=self.envelope.rcpt_tos, error=describe(error))

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "DATA":  # the final dot has come: the rest is our work, not the client's
            self._end_data()
        return await super()._call_handler_hook(command, *args)

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = self._with_enhanced_code(status)
            self._reply_phase(status)
            await super().push(status)
        else:
            self._reply_phase(status.decode("ascii", "replace"))
            await super().push(status)
        # MAIL accepted, or the transaction over (reply to DATA, RSET): the other timeout from now on.
        # Only then: as in aiosmtpd, a reply to junk (an empty line, say) does not restart the timer.
        open_ = self.transport is not None and not self.transport.is_closing()
        if open_ and self._data_started is None and self.in_transaction != self._timer_in_transaction:
            self._reset_timeout()

    def _reply_phase(self, text: str) -> None:
        """Before a reply is written: a 354 starts the reading of DATA, any other reply ends it."""
        if text.startswith("354"):
            self._start_data()  # before the write: the client may answer at once
        else:
            self._end_data()  # a refusal of the data (too long, too much) ends its reading too

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
