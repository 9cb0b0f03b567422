"""The aiosmtpd handler of every LMTP and SMTP listener (`Intake`): the envelope and the data checked at
the edge, the raw bytes made durable in the spool before the 250, then handed to the pipeline
(`on_spooled`). See maild.ingress.listeners for what is answered when. The listeners stream DATA into a
temporary spool file (`envelope.spool_file`); here it is made durable and its rows committed together
with those of the mails that arrived at the same time (maild.ingress.group_commit), before the 250. All
database work and every fsync run off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.config import Config
from maild.ingress.connection_limits import peer_label
from maild.ingress.group_commit import GroupCommitter, PendingMail
from maild.ingress.headers import HEADER_SCAN_BYTES, HeaderFields, header_fields
from maild.ingress.intake_caches import BlockedSenders, DeskAddresses
from maild.ingress.log_fields import describe, ms_since
from maild.logs import get_logger
from maild.mail.addresses import normalize
from maild.mail.automatic import NULL_SENDER
from maild.outbound.blocklist import Rule
from maild.storage.spool import SpoolFile, discard_incoming, spool_file_of

log = get_logger("maild.listeners")

TRY_LATER = "451 4.3.0 Temporary local problem, try again later"
STALE_INCOMING_SECONDS = 24 * 3600  # a mail still arriving after a day is not: its writer is gone
MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: a server must accept at least 100 per message


@dataclass(frozen=True)
class Spooled:
    """A message made durable: one 'received' spool row per recipient, in RCPT order."""

    spool_ids: tuple[int, ...]
    recipients: tuple[str, ...]
    message_id: str
    size: int
    ingress: str


class StreamedEnvelope(Envelope):
    """aiosmtpd's envelope with the DATA in a spool file instead of `original_content`."""

    def __init__(self) -> None:
        super().__init__()
        self.spool_file: SpoolFile | None = None


class DotReader:
    """RFC 5321 4.5.2 on chunks as they arrive: the lone "." line ends the data, a leading "." of any
    other line is removed. A line longer than `line_limit` is dropped (and the mail refused)."""

    def __init__(self, line_limit: int) -> None:
        self._line_limit = line_limit
        self._partial = b""  # the last line, not complete yet
        self._dropping = False  # inside an over-long line: its bytes are dropped up to its CRLF
        self.too_long = False
        self.ended = False
        self.after = b""  # what came after the final dot: the next commands of a pipelining client

    def feed(self, chunk: bytes) -> tuple[bytes, int]:
        """(the unstuffed data of the complete lines in `chunk`, the bytes they took on the wire)."""
        buffer = self._partial + chunk
        last = buffer.rfind(b"\r\n")
        if last < 0:
            self._partial = buffer
            if len(buffer) > self._line_limit:
                self._partial, self._dropping, self.too_long = b"", True, True
            return b"", 0
        lines, self._partial = buffer[: last + 2], buffer[last + 2 :]
        if self._dropping:  # the rest of the over-long line, up to its CRLF, goes too
            self._dropping = False
            lines = lines[lines.find(b"\r\n") + 2 :]
        if lines.startswith(b".\r\n"):
            self._end(lines, 0, 3)
            return b"", 0
        end = lines.find(b"\r\n.\r\n")
        if end >= 0:
            lines = self._end(lines, end + 2, end + 5)
        if len(lines) > self._line_limit and any(len(x) > self._line_limit for x in lines.split(b"\r\n")):
            self.too_long = True
        data = lines.replace(b"\r\n.", b"\r\n")
        return (data[1:] if data.startswith(b".") else data), len(lines)

    def _end(self, lines: bytes, data_end: int, dot_end: int) -> bytes:
        self.ended = True
        self.after, self._partial = lines[dot_end:] + self._partial, b""
        return lines[:data_end]


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
        self.committer = GroupCommitter(factory)
        try:
            discard_incoming(cfg.spool_dir, STALE_INCOMING_SECONDS)
        except OSError as exc:  # the spool unusable: every DATA answers 451 and says why in the log
            log.warning("spool_cleanup_failed", error=describe(exc))

    @property
    def spool_dir(self) -> Path:
        return self._cfg.spool_dir

    def close(self) -> None:
        """After the listeners drained: the committer's threads end."""
        self.committer.close()

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
                    peer=peer_label(session),
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
            log.info("recipient_rejected", recipient=address, code=550, peer=peer_label(session))
            return f"550 5.1.1 <{address}>: no such desk"
        envelope.rcpt_tos.append(address)  # a handle_RCPT hook owns the envelope's recipient list
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        lmtp = isinstance(server, LMTP)
        recipients = tuple(envelope.rcpt_tos)
        started = time.perf_counter()
        file: SpoolFile | None = getattr(envelope, "spool_file", None)  # None: a server that did not stream
        handed = False
        try:
            if file is None:
                file = await self._file_of(envelope.original_content or b"")
            fields = header_fields(file.head)
            if self._rejecting:
                refusal = await self._check_from(fields, envelope, session)
                if refusal is not None:  # nothing spooled
                    return "\r\n".join([refusal] * len(recipients)) if lmtp else refusal
            mail = PendingMail(
                file,
                tuple(map(normalize, recipients)),
                "lmtp" if lmtp else "smtp",
                envelope.mail_from or NULL_SENDER,
            )
            task = asyncio.ensure_future(self._spool(mail, recipients, fields.message_id))
            handed = True
            # Whatever reached the spool is processed, even if the client hangs up before its 250.
            task.add_done_callback(self._hand_over)
            spooled = await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "spool_failed",
                ingress="lmtp" if lmtp else "smtp",
                recipients=list(recipients),
                size=file.size if file is not None else len(envelope.original_content or b""),
                error=describe(exc),
                duration_ms=ms_since(started),
            )
            return "\r\n".join([TRY_LATER] * len(recipients)) if lmtp else TRY_LATER
        finally:
            if file is not None and not handed:
                file.discard()
        log.info(
            "accepted",
            ingress=spooled.ingress,
            message_id=spooled.message_id,
            spool_ids=list(spooled.spool_ids),
            recipients=list(recipients),
            mail_from=envelope.mail_from,
            size=spooled.size,
            duration_ms=ms_since(started),
        )
        if lmtp:  # RFC 2033: one reply per accepted recipient, in RCPT order
            return "\r\n".join(
                f"250 2.0.0 <{rcpt}> OK, spooled as {sid}"
                for rcpt, sid in zip(recipients, spooled.spool_ids, strict=True)
            )
        return f"250 2.0.0 OK, spooled as {','.join(map(str, spooled.spool_ids))}"

    async def take(self, raw: bytes, recipient: str, ingress: str, mail_from: str) -> Spooled:
        """A mail made here (the web pages' replies and new tickets): durable and committed like one from
        a listener, then handed to the pipeline. Raises when it could not be spooled (nothing taken)."""
        file = await self._file_of(raw)
        mail = PendingMail(file, (normalize(recipient),), ingress, mail_from or NULL_SENDER)
        task = asyncio.ensure_future(self._spool(mail, (recipient,), header_fields(file.head).message_id))
        task.add_done_callback(self._hand_over)
        return await asyncio.shield(task)

    async def _file_of(self, raw: bytes) -> SpoolFile:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, spool_file_of, self._cfg.spool_dir, raw, HEADER_SCAN_BYTES
        )

    async def _spool(self, mail: PendingMail, recipients: tuple[str, ...], message_id: str) -> Spooled:
        """The file durable and the rows committed, in a group (maild.ingress.group_commit)."""
        spool_ids = await self.committer.submit(mail)
        return Spooled(spool_ids, recipients, message_id, mail.file.size, mail.ingress)

    async def _check_from(self, fields: HeaderFields, envelope: Envelope, session: Session) -> str | None:
        """Reject mode, after DATA: the refusal when a From address is blocked, else None."""
        try:
            found = await self._blocked_sender(fields.from_addresses)
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
            peer=peer_label(session),
        )
        return f"550 5.7.1 <{address}>: sender not accepted"

    async def handle_exception(self, error: Exception) -> str:
        # Without this aiosmtpd answers a permanent 500 carrying the error text: the MTA would bounce.
        log.error("session_error", error=describe(error))
        return TRY_LATER

    def _hand_over(self, future: asyncio.Future[Spooled]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        try:
            self._on_spooled(future.result())
        except Exception as exc:  # the rows stay 'received': the recovery sweep processes them
            log.error("hand_over_failed", error=describe(exc))
