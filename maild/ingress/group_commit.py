"""Group commit for the intake: the mails whose DATA ended within a few milliseconds of each other are
made durable together, their files fsynced side by side and all their 'received' rows inserted in ONE
transaction, and only after that commit is any of them answered 250.

Why: one fsync costs ~3 ms here and SQLite has one writer, so a transaction and an fsync per mail capped
the intake at ~150 mail/s however many clients sent. Concurrent fsyncs share the file system's journal
commit (ext4: ~200 files/s from one thread, ~3500/s from four), and one transaction for 50 mails costs
about what one for a single mail does.

How: `submit` queues a mail on the event loop and starts its fsync in a small pool of threads. While no
group is being committed, the queue is flushed after `window` seconds (default 0: at the loop's next
turn, so the mails whose DATA ended in the same turn go together), or at once when `max_group` mails
wait; while a group is committed, arrivals wait for it and form the next group. So the group size follows
the load (as PostgreSQL's commit_delay = 0 does) and a lone mail waits for nobody. The group runs in the
committer's own thread, one at a time (SQLite has one writer anyway), off the event loop: it waits for
its mails' fsyncs, which overlapped the previous group's transaction, then commits.

A failed transaction is retried mail by mail before anyone is answered: the failure may belong to one
mail (a value the database refuses), and that mail must not take the others of its group down with it
again and again as the MTAs retry; a database that is down fails the single tries too, and then every
mail of the group gets its 451. A mail whose file cannot be made durable fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.ingress.log_fields import describe
from maild.logs import get_logger
from maild.storage.db import transaction, urgent
from maild.storage.spool import ReceivedRow, SpoolFile, record_received_many

log = get_logger("maild.listeners")

WINDOW_SECONDS = 0.0  # how long a lone mail waits for company; a few ms gained nothing measurable here
MAX_GROUP = 64  # mails per group: bounds one transaction's size and the wait of its first mail
FSYNC_THREADS = 8  # concurrent fsyncs share a journal commit; more gained nothing here (ext4, 2 cores)


@dataclass(frozen=True)
class PendingMail:
    """A mail whose DATA is complete in a temporary spool file, waiting for its group."""

    file: SpoolFile
    recipients: tuple[str, ...]  # normalized, in RCPT order
    ingress: str
    mail_from: str


# A queued mail: its fsync (started at once), and the future its DATA reply waits for.
_Waiting = tuple[PendingMail, "Future[Exception | None]", "asyncio.Future[tuple[int, ...]]"]


class GroupCommitter:
    """Commits queued mails in groups; `submit` resolves to the spool ids, in RCPT order."""

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        *,
        window: float = WINDOW_SECONDS,
        max_group: int = MAX_GROUP,
    ) -> None:
        # A sender waits on the line for these commits: they go before the pipeline's and the sender's.
        self._factory = urgent(factory)
        self._window = window
        self._max_group = max_group
        self._queue: list[_Waiting] = []
        self._committing = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="group-commit")
        self._fsync = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="spool-fsync")
        self.groups = 0  # committed groups and the mails in them: for tests and the status
        self.grouped = 0

    def submit(self, mail: PendingMail) -> asyncio.Future[tuple[int, ...]]:
        """Queue `mail`; the future resolves only after its file is durable and its rows committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, ...]] = loop.create_future()
        # The fsync starts now, not with the group: it overlaps the running group's transaction.
        self._queue.append((mail, self._fsync.submit(_make_durable, mail), future))
        if self._committing:
            return future  # flushed when the running group is done
        if len(self._queue) >= self._max_group:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = loop.call_later(self._window, self._flush)
        return future

    def close(self) -> None:
        """After the listeners drained: the threads end once their work is done."""
        self._committer.shutdown(wait=True)
        self._fsync.shutdown(wait=True)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._committing or not self._queue:
            return
        group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
        self._committing = True
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._committer, self._commit, [(m, durable) for m, durable, _ in group])
        job.add_done_callback(lambda done: self._answer(group, done))

    def _answer(self, group: list[_Waiting], done: asyncio.Future[list[tuple[int, ...] | Exception]]) -> None:
        self._committing = False
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        outcomes: Sequence[tuple[int, ...] | BaseException] = (
            [error] * len(group) if error is not None else done.result()
        )
        for (_, _, future), outcome in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if self._queue:  # arrived while this group was committed: they are the next group, at once
            self._flush()

    # --- in the committer thread ------------------------------------------------------------------------

    def _commit(
        self, waiting: list[tuple[PendingMail, Future[Exception | None]]]
    ) -> list[tuple[int, ...] | Exception]:
        """Once their files are durable, one transaction for every mail whose file is."""
        group = [mail for mail, _ in waiting]
        outcomes: list[tuple[int, ...] | Exception | None] = [synced.result() for _, synced in waiting]
        durable = [i for i, outcome in enumerate(outcomes) if outcome is None]
        try:
            for i, spool_ids in zip(durable, self._insert([group[i] for i in durable]), strict=True):
                outcomes[i] = spool_ids
            self._count(len(durable))
        except Exception as exc:
            if len(durable) > 1:
                log.warning("group_commit_failed", mails=len(durable), error=describe(exc))
            for i in durable:
                outcomes[i] = self._insert_alone(group[i]) if len(durable) > 1 else exc
        return [outcome if outcome is not None else RuntimeError("not committed") for outcome in outcomes]

    def _count(self, mails: int) -> None:
        if mails:
            self.groups += 1
            self.grouped += mails

    def _insert_alone(self, mail: PendingMail) -> tuple[int, ...] | Exception:
        try:
            [spool_ids] = self._insert([mail])
        except Exception as exc:
            return exc
        self._count(1)
        return spool_ids

    def _insert(self, group: list[PendingMail]) -> list[tuple[int, ...]]:
        if not group:
            return []
        rows = [
            ReceivedRow(mail.file.digest, mail.file.size, rcpt, mail.ingress, mail.mail_from)
            for mail in group
            for rcpt in mail.recipients
        ]
        with transaction(self._factory) as session:
            row_ids = iter(record_received_many(session, rows))
        return [tuple(next(row_ids) for _ in mail.recipients) for mail in group]


def _make_durable(mail: PendingMail) -> Exception | None:
    try:
        mail.file.store()
    except Exception as exc:
        return exc
    return None
