"""The aiosmtpd handler of every LMTP and SMTP listener (`Intake`): the envelope and the data checked at
the edge, the raw bytes made durable in the spool before the 250, then handed to the pipeline
(`on_spooled`). See maild.ingress.listeners for what is answered when. All database and disk work runs
in an executor: the event loop only moves bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.config import Config
from maild.ingress.connection_limits import peer_label
from maild.ingress.headers import from_addresses, message_id_of
from maild.ingress.intake_caches import BlockedSenders, DeskAddresses
from maild.ingress.log_fields import describe, ms_since
from maild.logs import get_logger
from maild.mail.addresses import normalize
from maild.mail.automatic import NULL_SENDER
from maild.outbound.blocklist import Rule
from maild.storage.db import transaction
from maild.storage.spool import record_received, write_raw

log = get_logger("maild.listeners")

TRY_LATER = "451 4.3.0 Temporary local problem, try again later"
MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: a server must accept at least 100 per message


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
                duration_ms=ms_since(started),
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
            duration_ms=ms_since(started),
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
            peer=peer_label(session),
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
