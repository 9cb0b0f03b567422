"""IMAP polling for `maild serve`: every `[[imap]]` account's folder is read into the spool, like mail
arriving over LMTP, with ingress "imap" and the desk's primary address as the recipient.

One cycle: connect (IMAPS, or plain IMAP on loopback), LOGIN, SELECT the folder, compare its UIDVALIDITY
with the ImapState row, UID SEARCH for everything above the last UID spooled, then per message in UID
order: UID FETCH BODY.PEEK[] → raw bytes fsynced to the spool → one transaction that inserts the
'received' row *and* advances ImapState.last_uid (a crash never skips a message: either both happened or
neither) → only then \\Seen (or MOVE to `move_to`) on the server → `on_spooled`, so the pipeline runs.
A message is never marked or moved before it is durable.

Why everything above last_uid and not UNSEEN: the mailbox is often shared with people, and a human who
opened a new mail in a client has set \\Seen before maild saw it. The UID is maild's own bookmark; the
flag is only a courtesy to those humans.

UIDVALIDITY changed (the folder was recreated, the server migrated): every message is fetched again from
UID 0. Nothing is duplicated: record_received returns a still 'received' row for the same bytes and
recipient, and the pipeline's dedupe stage turns a message already on the desk (same Message-ID and
content) into a 'duplicate' outcome, not a ticket. With `move_to` the folder holds only what was not
moved yet, so a reset costs little; without it the whole folder is read once more.

Between cycles: IDLE when the server offers it and the account allows it (at most poll_seconds, then a
cycle anyway: a NAT box may have dropped the connection silently), otherwise log out and sleep
poll_seconds. Every aioimaplib call runs under asyncio.wait_for (it has no timeouts of its own for
STORE/COPY/MOVE/EXPUNGE, and IDLE can hang on a dead connection). Any failure (refused, login, timeout,
database down, disk full) is one log line with the account, the connection is dropped, and the poller
retries after 1 s, doubling up to 5 minutes; a successful cycle resets that. It never ends the daemon.

Blocking work (database, fsync) runs in threads; the event loop only talks IMAP.

Not handled: two maild instances polling the same account (each would spool every message; dedupe keeps
the tickets single, but the work is double); messages larger than listen.max_message_bytes are still
fetched (the mailbox already accepted them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import TypeVar

from aioimaplib import aioimaplib
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, ConfigError, ImapAccount
from maild.ingress.headers import header_block, message_id_of
from maild.ingress.intake import Spooled
from maild.ingress.log_fields import describe
from maild.logs import get_logger
from maild.mail.addresses import normalize
from maild.storage.db import transaction
from maild.storage.models import Desk, ImapState, utcnow
from maild.storage.spool import record_received, write_raw

log = get_logger("maild.imap")

INGRESS = "imap"  # fits SpoolEntry.ingress (String(10))
COMMAND_TIMEOUT = 60.0  # one IMAP command; also aioimaplib's inactivity timeout while a FETCH streams
FETCH_TIMEOUT = 600.0  # one message in total: 50 MiB at ~100 kB/s
IDLE_MAX_SECONDS = 29 * 60.0  # RFC 2177: servers may log out a client idle for 30 minutes
BACKOFF_MIN = 1.0
BACKOFF_MAX = 300.0
LOGOUT_TIMEOUT = 5.0

T = TypeVar("T")


class ImapProblem(Exception):
    """The server answered NO/BAD, or something the poller cannot use."""


class DeskMissing(Exception):
    """The account's desk does not exist (yet) or has no address: nothing can be routed to it."""


class ConnectionLost(Exception):
    pass


def imap_utf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3): "Gelöscht" → "Gel&APY-scht"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def mailbox_arg(name: str) -> str:
    return aioimaplib.quoted(imap_utf7(name))


def return_path(raw: bytes) -> str:
    """The envelope sender the delivering MTA recorded (Return-Path), as `maild pipe --sender` would get
    it: "" for the null sender <> and when there is none."""
    value = str(BytesHeaderParser(policy=compat32).parsebytes(header_block(raw)).get("Return-Path", ""))
    found = re.search(r"<([^<>\s]*)>", value)
    return found.group(1) if found else value.strip()


def _text(lines: list[bytes | bytearray]) -> str:
    """A server's answer for the log: its last line (the tagged status text), short."""
    for line in reversed(lines):
        if isinstance(line, bytes) and line:
            return line.decode("utf-8", "replace")[:200]
    return ""


class ImapPoller:
    """Polls one account's folder into the spool until `stopping` is set."""

    def __init__(
        self,
        cfg: Config,
        account: ImapAccount,
        factory: sessionmaker[Session],
        on_spooled: Callable[[Spooled], None],
        *,
        command_timeout: float = COMMAND_TIMEOUT,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.account = account
        self.factory = factory
        self.on_spooled = on_spooled
        self.command_timeout = command_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.ssl_context = ssl_context
        self._backoff = backoff_min
        self._lost = asyncio.Event()  # set by aioimaplib when the server closes the connection

    # --- the loop ----------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                idling = await self._session(stopping)
            except Exception as exc:
                delay = self._backoff
                self._backoff = min(self._backoff * 2, self.backoff_max)
                self._log_failure(exc, delay)
                await _wait(stopping, delay)
                continue
            if not idling:
                await _wait(stopping, self.account.poll_seconds)

    async def poll_once(self) -> int:
        """Connect, run one cycle, log out; returns how many messages were spooled. Errors propagate."""
        recipient = await asyncio.to_thread(self._desk_address)
        imap = await self._connect()
        try:
            count = await self._cycle(imap, recipient, None)
            await self._logout(imap)
            return count
        finally:
            self._close(imap)

    def _log_failure(self, exc: Exception, delay: float) -> None:
        fields = {"account": self.account.name, "retry_in_seconds": delay}
        if isinstance(exc, DeskMissing):
            log.error("imap_desk_missing", desk=self.account.desk, **fields)
        elif isinstance(exc, ConfigError):  # the password cannot be read
            log.error("imap_failed", error=str(exc), **fields)
        else:
            log.warning("imap_failed", host=self.account.host, error=describe(exc), **fields)

    async def _session(self, stopping: asyncio.Event) -> bool:
        """One connection: cycles separated by IDLE while the server offers it. Returns whether it idled
        (False: the caller sleeps poll_seconds before the next connection)."""
        recipient = await asyncio.to_thread(self._desk_address)
        imap = await self._connect()
        try:
            while True:
                await self._cycle(imap, recipient, stopping)
                self._backoff = self.backoff_min
                if stopping.is_set():
                    await self._logout(imap)
                    return True
                if not (self.account.idle and imap.has_capability("IDLE")):
                    await self._logout(imap)
                    return False
                await self._idle(imap, stopping)
                if stopping.is_set():
                    await self._logout(imap)
                    return True
                recipient = await asyncio.to_thread(self._desk_address)  # the desk may have changed
        finally:
            self._close(imap)

    # --- IMAP ----------------------------------------------------------------------------------------

    async def _call(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        return await asyncio.wait_for(awaitable, timeout or self.command_timeout)

    async def _connect(self) -> aioimaplib.IMAP4:
        account = self.account
        # ConfigError: logged and retried, the file may be fixed meanwhile.
        password = await asyncio.to_thread(account.password)
        lost = self._lost = asyncio.Event()  # this connection's own: a late callback of the last one
        if account.tls:
            imap: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                account.host, account.port, timeout=self.command_timeout, ssl_context=self.ssl_context
            )
        else:
            imap = aioimaplib.IMAP4(account.host, account.port, timeout=self.command_timeout)
        # IMAP4_SSL takes no callback argument; the protocol object has it either way.
        imap.protocol.conn_lost_cb = lambda _exc: lost.set()
        try:
            await self._call(imap.wait_hello_from_server())
            response = await self._call(imap.login(aioimaplib.quoted(account.username), password))
            if response.result != "OK":
                raise ImapProblem(f"LOGIN as {account.username} refused: {_text(response.lines)}")
            # Fresh: aioimaplib parses the CAPABILITY code of the LOGIN answer loosely (a "]" sticks).
            await self._call(imap.protocol.capability())
            if account.move_to is not None:
                await self._call(imap.create(mailbox_arg(account.move_to)))  # NO when it exists: fine
        except BaseException:
            self._close(imap)
            raise
        return imap

    async def _select(self, imap: aioimaplib.IMAP4) -> int:
        response = await self._call(imap.select(mailbox_arg(self.account.folder)))
        if response.result != "OK":
            raise ImapProblem(f"SELECT {self.account.folder} failed: {_text(response.lines)}")
        for line in response.lines:
            found = re.search(rb"\[UIDVALIDITY (\d+)\]", line)
            if found:
                return int(found.group(1))
        raise ImapProblem(f"SELECT {self.account.folder}: the server sent no UIDVALIDITY")

    async def _search(self, imap: aioimaplib.IMAP4, criteria: str) -> list[int]:
        response = await self._call(imap.uid_search(criteria, charset=None))
        if response.result != "OK":
            raise ImapProblem(f"UID SEARCH {criteria} failed: {_text(response.lines)}")
        # aioimaplib hands over the untagged "* SEARCH 3 4" as b"3 4"; the last line is the tagged text.
        uids: list[int] = []
        for line in response.lines[:-1]:
            uids += [int(part) for part in bytes(line).split() if part.isdigit()]
        return sorted(set(uids))

    async def _fetch(self, imap: aioimaplib.IMAP4, uid: int) -> bytes:
        response = await self._call(imap.uid("fetch", str(uid), "(UID BODY.PEEK[])"), FETCH_TIMEOUT)
        if response.result != "OK":
            raise ImapProblem(f"UID FETCH {uid} failed: {_text(response.lines)}")
        lines = response.lines
        for index, line in enumerate(lines):
            if not isinstance(line, bytearray) or index == 0:
                continue  # literals are bytearrays; the line before opens the FETCH response
            around = bytes(lines[index - 1])
            if index + 1 < len(lines) and isinstance(lines[index + 1], bytes):
                around += b" " + lines[index + 1]  # some servers send UID after the literal
            found = re.search(rb"UID (\d+)", around)
            if found and int(found.group(1)) == uid and b"BODY[]" in lines[index - 1]:
                return bytes(line)
        # Gone (expunged by another client) or not served now: never skip it silently, since a later
        # UID would move last_uid past it. The next cycle searches again; a gone message is not found.
        raise ImapProblem(f"UID FETCH {uid}: no message body in the answer")

    async def _mark_done(self, imap: aioimaplib.IMAP4, uid: int) -> None:
        """\\Seen, or moved to move_to: only ever called for a message already durable in the spool."""
        move_to = self.account.move_to
        if move_to is None:
            await self._expect(imap.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"), f"STORE {uid}")
        elif imap.has_capability("MOVE"):
            # uid("move"), not move(): aioimaplib's move() takes sequence numbers.
            await self._expect(imap.uid("move", str(uid), mailbox_arg(move_to)), f"MOVE {uid}")
        else:
            await self._expect(imap.uid("copy", str(uid), mailbox_arg(move_to)), f"COPY {uid}")
            await self._expect(
                imap.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen \Deleted)"), f"STORE {uid}"
            )
            # Plain EXPUNGE would also remove what others marked \Deleted: only with UIDPLUS.
            if imap.has_capability("UIDPLUS"):
                await self._expect(imap.uid("expunge", str(uid)), f"EXPUNGE {uid}")

    async def _expect(self, awaitable: Awaitable[aioimaplib.Response], what: str) -> None:
        response = await self._call(awaitable)
        if response.result != "OK":
            raise ImapProblem(f"UID {what} failed: {_text(response.lines)}")

    async def _idle(self, imap: aioimaplib.IMAP4, stopping: asyncio.Event) -> None:
        """Wait for the server to announce a change (or poll_seconds, or stopping), then end IDLE."""
        timeout = min(self.account.poll_seconds, IDLE_MAX_SECONDS)
        idle = await self._call(imap.idle_start(timeout=IDLE_MAX_SECONDS))
        log.debug("imap_idling", account=self.account.name, seconds=timeout)
        waits = [
            asyncio.ensure_future(imap.wait_server_push(timeout)),
            asyncio.ensure_future(stopping.wait()),
            asyncio.ensure_future(self._lost.wait()),
        ]
        try:
            # A push, poll_seconds without one (TimeoutError: a cycle anyway), stopping, or a lost line.
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)  # retrieved: no "never retrieved" noise
        if self._lost.is_set():
            raise ConnectionLost("the server closed the connection while idling")
        imap.idle_done()
        response = await self._call(idle)  # the tagged OK that ends IDLE
        if response.result != "OK":
            raise ImapProblem(f"IDLE failed: {_text(response.lines)}")

    async def _logout(self, imap: aioimaplib.IMAP4) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(imap.logout(), LOGOUT_TIMEOUT)

    def _close(self, imap: aioimaplib.IMAP4) -> None:
        """Drop the connection without asking the server (it may be gone or mid-command)."""
        transport = imap.protocol.transport
        if transport is not None:
            transport.close()
        imap._client_task.cancel()  # still connecting: no socket left behind
        for task in [*imap.tasks, *imap.protocol.tasks]:
            task.cancel()

    # --- one cycle -----------------------------------------------------------------------------------

    async def _cycle(self, imap: aioimaplib.IMAP4, recipient: str, stopping: asyncio.Event | None) -> int:
        account = self.account
        uidvalidity = await self._select(imap)
        last_uid = await asyncio.to_thread(self._load_state, uidvalidity)
        if account.move_to is not None and last_uid > 0:
            # Spooled (last_uid covers them) but the MOVE after the commit failed: finish it now.
            for uid in await self._search(imap, f"UID 1:{last_uid}"):
                await self._mark_done(imap, uid)
        # "n:*" always matches the highest UID, even below n: filter.
        uids = [uid for uid in await self._search(imap, f"UID {last_uid + 1}:*") if uid > last_uid]
        count = 0
        for uid in uids:
            if stopping is not None and stopping.is_set():
                break  # the rest waits for the next start: nothing is lost
            raw = await self._fetch(imap, uid)
            spooled = await asyncio.to_thread(self._spool, raw, recipient, uidvalidity, uid)
            count += 1
            log.info(
                "imap_spooled",
                account=account.name,
                uid=uid,
                spool_ids=list(spooled.spool_ids),
                message_id=spooled.message_id,
                recipient=recipient,
                size=spooled.size,
            )
            try:
                await self._mark_done(imap, uid)
            finally:
                # Committed: processing must not wait for the server's answer (a failure here is
                # retried by the reconnect; the row would otherwise wait for the recovery sweep).
                self._hand_over(spooled)
        return count

    def _hand_over(self, spooled: Spooled) -> None:
        try:
            self.on_spooled(spooled)
        except Exception as exc:  # the row stays 'received': the recovery sweep processes it
            log.error("hand_over_failed", account=self.account.name, error=describe(exc))

    # --- blocking: database and disk, in a thread ----------------------------------------------------

    def _desk_address(self) -> str:
        with self.factory() as session:
            desk = session.scalars(select(Desk).where(Desk.name == self.account.desk)).first()
            if desk is None or not desk.addresses:
                raise DeskMissing(f"desk {self.account.desk!r} does not exist or has no address")
            return normalize(desk.addresses[0].address)  # the first address is the desk's primary one

    def _load_state(self, uidvalidity: int) -> int:
        """The last UID spooled under this UIDVALIDITY; 0 (and a reset row) when it changed or is new."""
        account = self.account
        with transaction(self.factory) as session:
            state = session.get(ImapState, (account.name, account.folder))
            if state is not None and state.uidvalidity == uidvalidity:
                return state.last_uid
            if state is None:
                session.add(ImapState(account=account.name, folder=account.folder, uidvalidity=uidvalidity))
            else:
                log.warning(
                    "imap_uidvalidity_changed",
                    account=account.name,
                    folder=account.folder,
                    old=state.uidvalidity,
                    new=uidvalidity,
                    last_uid=state.last_uid,
                )
                state.uidvalidity, state.last_uid, state.updated_at = uidvalidity, 0, utcnow()
            return 0

    def _spool(self, raw: bytes, recipient: str, uidvalidity: int, uid: int) -> Spooled:
        """The bytes fsynced, then the 'received' row and the new last_uid in one transaction."""
        account = self.account
        digest = write_raw(self.cfg.spool_dir, raw)
        with transaction(self.factory) as session:
            entry = record_received(session, digest, len(raw), recipient, INGRESS, return_path(raw))
            state = session.get(ImapState, (account.name, account.folder))
            if state is None:  # removed meanwhile (an admin starting over): recreate it
                state = ImapState(account=account.name, folder=account.folder, uidvalidity=uidvalidity)
                session.add(state)
            state.uidvalidity, state.last_uid, state.updated_at = uidvalidity, uid, utcnow()
            spool_id = entry.id
        return Spooled((spool_id,), (recipient,), message_id_of(raw), len(raw), INGRESS)


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when the daemon stops."""
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def run_pollers(
    cfg: Config,
    factory: sessionmaker[Session],
    on_spooled: Callable[[Spooled], None],
    stopping: asyncio.Event,
) -> None:
    """One poller per [[imap]] account until `stopping` is set. A poller never raises; each retries on
    its own (a missing desk too: it may be added while the daemon runs)."""
    pollers = [ImapPoller(cfg, account, factory, on_spooled) for account in cfg.imap]
    for poller in pollers:
        log.info(
            "imap_polling",
            account=poller.account.name,
            host=poller.account.host,
            folder=poller.account.folder,
            desk=poller.account.desk,
        )
    await asyncio.gather(*(poller.run(stopping) for poller in pollers))
