"""`maild serve`: the long-running daemon. One asyncio loop runs every LMTP and SMTP listener; the
pipeline runs in a pool of worker threads, so a slow ticket never holds up intake.

Life cycle:
  start    load the config (exit 78 when invalid, also an unreadable TLS certificate), check the database
           schema (exit 78 when it is missing or not this code's: storage.schema), bind every listener
           (exit 71 when an address cannot be bound), then recover the spool: every row still 'received'
           (a crash or a stop before it was processed) goes to the workers. The database may be down at
           start: intake answers 451 until it is back, and the recovery sweep tries again.
  running  a message is answered 250 once it is durable in the spool (see maild.ingress.listeners), then
           processed by a worker, then its queued replies are handed to the sender, as `maild pipe` does.
           The scheduler's jobs ([scheduler] in the config): `outbox` sends what is due (retries, and mail
           a crashed or busy sender left), `auto_close` closes inactive tickets, `escalations` runs the
           desks' escalation rules and reminders, `flood_digest` (every minute) sends agents one digest of
           a flooding sender's mails they got no notice of (maild.tickets.flood_digest), `spool_recovery`
           picks up
           rows a transient failure left 'received'. Every run of a job is recorded in `job_runs`
           (`maildctl health` reads it). The control socket `<data_dir>/maild.sock` takes mail
           `maild pipe` spooled (maild.ingress.control): recorded and processed here, the verdict goes back to
           the waiting pipe; and it answers `maildctl health`'s status request.
  SIGHUP   reload the desk address cache and the templates (the rest of the config needs a restart).
  SIGTERM  stop accepting, let open mail transactions finish (up to DRAIN_SECONDS), let running pipeline
  SIGINT   jobs finish, exit 0. Jobs not started yet stay 'received' and are processed at the next start:
           a stop takes as long as one message, not as long as the backlog.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from maild.config import EX_CONFIG, Config, ConfigError, check_imap_secrets, load_config
from maild.ingress.control import MAX_LINE, STATUS, BadRequest, claim_socket, parse_request, socket_path
from maild.ingress.imap_poll import run_pollers
from maild.ingress.listeners import (
    Connections,
    DeskAddresses,
    Intake,
    Spooled,
    describe,
    message_id_of,
    start_listeners,
    stop_listeners,
)
from maild.ingress.scheduler import Job, start_scheduler
from maild.logs import configure, get_logger
from maild.mail.addresses import normalize
from maild.outbound.sender import FlushResult, flush, release_dead_claims
from maild.outbound.templating import reload_templates
from maild.pipeline.runner import Result, process
from maild.storage.db import make_engine, make_sessionmaker, transaction
from maild.storage.files import content_path
from maild.storage.models import JobRun, SpoolEntry, utcnow
from maild.storage.schema import UNREACHABLE, check_database
from maild.storage.spool import record_received
from maild.tickets.autoclose import auto_close
from maild.tickets.escalations import escalate
from maild.tickets.flood_digest import INTERVAL_SECONDS as FLOOD_DIGEST_SECONDS
from maild.tickets.flood_digest import send_flood_digests
from maild.tickets.retention import purge_raw_mail

EX_OK, EX_OSERR = 0, 71
INTAKE_THREADS = 4  # spool writes and RCPT lookups; more would only queue on SQLite's write lock
JOB_THREADS = 2  # the scheduler's blocking work: sending the outbox, auto-close, escalations
RECOVERY_GRACE_SECONDS = 60.0  # younger 'received' rows are still on their way to a worker
DRAIN_SECONDS = 30.0

log = get_logger("maild.serve")

Tell = Callable[[Result | None], None]
T = TypeVar("T")
CONTROL_READ_SECONDS = 10.0  # a pipe sends its one line at once


def tls_context(cfg: Config) -> ssl.SSLContext | None:
    """The STARTTLS context for the SMTP listeners, when a certificate is configured."""
    listen = cfg.listen
    if listen.tls_cert is None or listen.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(listen.tls_cert, listen.tls_key)
    except (OSError, ssl.SSLError) as exc:
        problem = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            "listen.tls_cert", f"cannot load {listen.tls_cert} with {listen.tls_key}: {problem}"
        ) from None
    return context


def run_serve(config: str | None) -> int:
    try:
        cfg = load_config(config)
        tls = tls_context(cfg)
        check_imap_secrets(cfg)
    except ConfigError as exc:
        print(f"maild serve: {exc}", file=sys.stderr)
        return EX_CONFIG
    schema = check_database(cfg.database_url, cfg.busy_timeout_ms)
    if not schema.ready and schema.state != UNREACHABLE:
        print(f"maild serve: {schema.problem()}", file=sys.stderr)
        return EX_CONFIG
    configure()
    if schema.state == UNREACHABLE:  # it may come back: intake answers 451 until then
        log.warning("schema_not_checked", error=schema.detail)
    return asyncio.run(Daemon(cfg, tls).run())


def job_intervals(cfg: Config) -> dict[str, float]:
    """The scheduled jobs `maild serve` runs with this config, and their intervals in seconds."""
    schedule = cfg.schedule
    return {
        "outbox": schedule.outbox_seconds,
        "auto_close": schedule.auto_close_seconds,
        "escalations": schedule.escalation_seconds,
        "flood_digest": FLOOD_DIGEST_SECONDS,
        "spool_recovery": schedule.recovery_seconds,
        **({"spool_retention": schedule.retention_seconds} if cfg.spool_retention_days > 0 else {}),
    }


class Daemon:
    def __init__(self, cfg: Config, tls: ssl.SSLContext | None) -> None:
        self.cfg = cfg
        self.tls = tls
        self.engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
        self.factory = make_sessionmaker(self.engine)
        self.addresses = DeskAddresses(self.factory)
        self.intake_pool = ThreadPoolExecutor(INTAKE_THREADS, thread_name_prefix="intake")
        self.worker_pool = ThreadPoolExecutor(cfg.listen.workers, thread_name_prefix="worker")
        self.job_pool = ThreadPoolExecutor(JOB_THREADS, thread_name_prefix="job")
        self.connections = Connections(cfg.listen.max_connections)
        self.intake = Intake(cfg, self.factory, self.addresses, self.intake_pool, self._on_spooled)
        self.stopping = asyncio.Event()
        self.jobs: dict[asyncio.Future[None], tuple[int, ...]] = {}  # running or queued pipeline jobs
        self.in_flight: set[int] = set()  # their spool ids: the sweep leaves them alone
        # What the status request (`maildctl health`) reports:
        self.started_at = utcnow()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.bound: list[dict[str, str]] = []  # every listener's protocol and address, the control socket too
        self.scheduler: Any = None
        self.job_stats: dict[str, dict[str, Any]] = {}  # per scheduled job: runs, the last one's times

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Before binding: a SIGTERM from then on drains instead of killing mid-delivery.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop, signum)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload()))
        try:
            listeners = await start_listeners(self.cfg, self.intake, self.connections, self.tls)
        except OSError as exc:
            log.error("cannot_listen", error=describe(exc))
            self._close_pools()
            return EX_OSERR
        for listener in listeners:
            log.info("listening", protocol=listener.protocol, address=listener.bound)
            self.bound.append({"protocol": listener.protocol, "address": str(listener.bound)})
        control = await self._start_control()
        await self._reload(at_start=True)
        await self._sweep(grace_seconds=0)  # at start every 'received' row is left over from before
        await self._release_dead_claims()  # before the first outbox run: a killed instance's mail goes now
        runs = {
            "outbox": (self._send_outbox, True),
            "auto_close": (self._auto_close, True),
            "escalations": (self._escalate, True),
            "flood_digest": (self._flood_digest, True),
            "spool_recovery": (self._recover, False),
            "spool_retention": (self._purge_raw_mail, True),
        }
        scheduler = start_scheduler(
            [
                Job(name, seconds, runs[name][0], at_start=runs[name][1])
                for name, seconds in job_intervals(self.cfg).items()
            ]
        )
        self.scheduler = scheduler
        pollers = loop.create_task(run_pollers(self.cfg, self.factory, self._on_spooled, self.stopping))
        log.info(
            "ready",
            listeners=[f"{listener.protocol} {listener.bound}" for listener in listeners],
            workers=self.cfg.listen.workers,
            max_message_bytes=self.cfg.listen.max_message_bytes,
        )

        await self.stopping.wait()

        started = time.perf_counter()
        if control is not None:  # a pipe that finds no socket processes its mail itself
            server, path = control
            server.close()
            path.unlink(missing_ok=True)
        await stop_listeners(listeners)
        log.info("draining", sessions=len(self.connections.open), jobs=len(self.jobs))
        cut_off = await self.connections.drain(DRAIN_SECONDS)
        # The pollers see `stopping`, finish the message in hand (spooled, then marked) and return.
        try:
            await asyncio.wait_for(pollers, DRAIN_SECONDS)
        except TimeoutError:
            log.warning("imap_pollers_cut_off")  # what they spooled is processed at the next start
        scheduler.shutdown(wait=False)  # a job running now finishes in its thread (the pools wait for it)
        left = await self._drain_jobs()
        self._close_pools()
        self.engine.dispose()
        log.info(
            "stopped",
            sessions_cut_off=cut_off,
            left_for_recovery=left,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return EX_OK

    def _stop(self, signum: int) -> None:
        if not self.stopping.is_set():
            log.info("stopping", signal=signal.Signals(signum).name, jobs=len(self.jobs))
            self.stopping.set()

    async def _reload(self, at_start: bool = False) -> None:
        loop = asyncio.get_running_loop()
        # Every desk's overrides validated (a broken one is logged as template_invalid and not used).
        try:
            await loop.run_in_executor(self.intake_pool, reload_templates, self.cfg.template_dir)
        except Exception as exc:  # an unreadable template directory must not stop intake
            log.error("templates_not_loaded", error=describe(exc))
        try:
            count = await loop.run_in_executor(self.intake_pool, self.addresses.refresh)
        except Exception as exc:
            log.error("desk_addresses_not_loaded", error=describe(exc))
            return
        log.info("desk_addresses_loaded", count=count, reason="start" if at_start else "SIGHUP")

    # --- the control socket: mail `maild pipe` spooled --------------------------------------------------

    async def _start_control(self) -> tuple[asyncio.Server, Path] | None:
        path = socket_path(self.cfg.data_dir)
        if path is None:
            log.warning("control_socket_off", reason="the data_dir path is too long for a unix socket")
            return None
        try:
            if not claim_socket(path):
                log.warning("control_socket_off", reason=f"another maild serve listens on {path}")
                return None
            server = await asyncio.start_unix_server(self._control_request, str(path), limit=MAX_LINE)
            path.chmod(0o660)  # the MTA's pipe runs as the daemon's user or group
        except OSError as exc:
            log.warning("control_socket_off", reason=describe(exc))
            return None
        log.info("listening", protocol="control", address=f"unix:{path}")
        self.bound.append({"protocol": "control", "address": f"unix:{path}"})
        return server, path

    async def _control_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One pipe, one spooled mail: record its row and answer as LMTP would — "spooled" once the row is
        committed when the recipient is a desk's; else (no recipient given, or not a desk's) only after
        the pipeline decided, so that the pipe can say 67 for an unknown recipient. Or a status request:
        answered at once, from memory."""
        loop = asyncio.get_running_loop()
        try:
            line = await asyncio.wait_for(reader.readline(), CONTROL_READ_SECONDS)
            request = parse_request(line)
            if request.get("request") == STATUS:
                writer.write(json.dumps(self._status()).encode() + b"\n")
                await writer.drain()
                return
            if self.stopping.is_set():
                return  # no answer: the pipe processes the mail itself
            try:
                spool_id, known = await loop.run_in_executor(self.intake_pool, self._record_piped, request)
            except BadRequest:
                raise
            except Exception as exc:  # database locked or down: the pipe exits 75, the MTA retries
                verdict = {"outcome": "deferred", "reason": describe(exc), "ticket": None}
            else:
                if known:
                    self._submit((spool_id,), None)
                    verdict = {"outcome": "spooled", "reason": f"spooled as {spool_id}", "ticket": None}
                else:
                    verdict = await self._verdict(spool_id)
            writer.write(json.dumps(verdict).encode() + b"\n")
            await writer.drain()
        except (BadRequest, ValueError, TimeoutError, OSError) as exc:
            log.warning("control_request_refused", error=describe(exc))
        finally:
            writer.close()

    def _status(self) -> dict[str, Any]:
        """The answer to a status request (maild.ingress.control): who runs, on what, and how its jobs
        went."""
        from maild.version import package_version

        now = utcnow()
        scheduled = []
        for name, seconds in job_intervals(self.cfg).items():
            job = self.scheduler.get_job(name) if self.scheduler is not None else None
            next_run = job.next_run_time if job is not None else None
            scheduled.append(
                {
                    "name": name,
                    "interval_seconds": seconds,
                    "next_run_at": _iso(next_run.astimezone(dt.UTC).replace(tzinfo=None))
                    if next_run
                    else None,
                    **self.job_stats.get(name, {"runs": 0}),
                }
            )
        return {
            "status": "stopping" if self.stopping.is_set() else "running",
            "pid": os.getpid(),
            "instance": self.instance,
            "version": package_version(),
            "started_at": _iso(self.started_at),
            "uptime_seconds": round((now - self.started_at).total_seconds(), 1),
            "data_dir": str(self.cfg.data_dir),
            "listeners": self.bound,
            "workers": self.cfg.listen.workers,
            "pipeline_jobs": len(self.jobs),  # queued or running in the workers
            "open_sessions": len(self.connections.open),
            "imap_accounts": [account.name for account in self.cfg.imap],
            "scheduled_jobs": scheduled,
        }

    def _record_piped(self, request: dict[str, Any]) -> tuple[int, bool]:
        """Blocking: the 'received' row of a mail the pipe made durable (its file must be there), and
        whether its recipient is a desk's."""
        path = content_path(self.cfg.spool_dir, request["sha256"], ".eml")
        try:
            if path.stat().st_size != request["size"]:
                raise BadRequest(f"{path.name} has another size than {request['size']}")
        except FileNotFoundError:
            raise BadRequest(f"no spooled file {path.name}") from None
        recipient = normalize(request["recipient"])
        with transaction(self.factory) as session:
            entry = record_received(
                session, request["sha256"], request["size"], recipient, "pipe", request["mail_from"]
            )
            spool_id = entry.id
        log.info(
            "accepted", ingress="pipe", spool_ids=[spool_id], recipients=[recipient], size=request["size"]
        )
        return spool_id, bool(recipient) and self.addresses.is_desk(recipient)

    async def _verdict(self, spool_id: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Result | None] = loop.create_future()

        def tell(result: Result | None) -> None:  # in the worker thread
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(result))

        if not self._submit((spool_id,), None, tell):
            # The same bytes' earlier row, queued or running already: durable, and on its way.
            return {"outcome": "spooled", "reason": "being processed already", "ticket": None}
        result = await done
        if result is None:
            return {"outcome": "deferred", "reason": "database unavailable", "ticket": None}
        return {"outcome": result.outcome, "reason": result.reason, "ticket": result.ticket_number}

    # --- the pipeline in worker threads --------------------------------------------------------------

    def _on_spooled(self, spooled: Spooled) -> None:
        self._submit(spooled.spool_ids, spooled.message_id)

    def _submit(self, spool_ids: tuple[int, ...], message_id: str | None, tell: Tell | None = None) -> bool:
        """Queue one job per message: its recipients' rows in order, in one worker (fewer lock fights).
        False when every row is queued or running already."""
        # dict.fromkeys: two RCPTs of one address (case, repeated) share one 'received' row.
        ids = tuple(i for i in dict.fromkeys(spool_ids) if i not in self.in_flight)
        if not ids:
            return False
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.worker_pool, self._process, ids, message_id, tell)
        self.jobs[job] = ids
        self.in_flight.update(ids)
        job.add_done_callback(self._job_done)
        return True

    def _job_done(self, job: asyncio.Future[None]) -> None:
        self.in_flight.difference_update(self.jobs.pop(job, ()))
        error = None if job.cancelled() else job.exception()
        if error is not None:  # _process catches everything; this would be a bug in it
            log.error("job_failed", error=repr(error)[:300])

    def _process(self, spool_ids: tuple[int, ...], message_id: str | None, tell: Tell | None = None) -> None:
        """Blocking, in a worker thread: each spool row through the pipeline, then its replies out.
        `tell` gets each row's result (None: deferred) before its replies are sent."""
        for spool_id in spool_ids:
            mid = message_id if message_id is not None else self._stored_message_id(spool_id)
            started = time.perf_counter()
            try:
                result = process(self.factory, self.cfg, spool_id)
            except Exception as exc:  # database locked or down: the row stays 'received', the sweep retries
                log.warning(
                    "processing_deferred",
                    spool_id=spool_id,
                    message_id=mid,
                    error=describe(exc),
                    duration_ms=_ms_since(started),
                )
                if tell is not None:
                    tell(None)
                continue
            log.info(
                "processed",
                spool_id=spool_id,
                message_id=mid,
                ticket=result.ticket_number,
                outcome=result.outcome,
                reason=result.reason,
                duration_ms=_ms_since(started),
            )
            if tell is not None:
                tell(result)
            if not result.outbox_ids:
                continue
            try:  # the ticket is committed; what cannot be sent now stays queued in the outbox
                sent = flush(self.factory, self.cfg, result.outbox_ids)
            except Exception as exc:
                log.warning(
                    "replies_not_sent", spool_id=spool_id, ticket=result.ticket_number, error=describe(exc)
                )
            else:
                log.info(
                    "replies_handed_over",
                    spool_id=spool_id,
                    ticket=result.ticket_number,
                    sent=sent.sent,
                    deferred=sent.deferred,
                    failed=sent.failed,
                )

    def _stored_message_id(self, spool_id: int) -> str:
        """For a recovered row: the Message-ID from the spooled file's header, for the log."""
        try:
            with self.factory() as session:
                entry = session.get(SpoolEntry, spool_id)
                if entry is None:
                    return ""
                with content_path(self.cfg.spool_dir, entry.sha256, ".eml").open("rb") as fh:
                    return message_id_of(fh.read(64 * 1024))
        except Exception:
            return ""  # only for the log: processing reports the real problem

    async def _drain_jobs(self) -> int:
        """Let running jobs finish; jobs not started yet are dropped: their rows stay 'received'."""
        jobs = dict(self.jobs)
        self.worker_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.gather(*jobs, return_exceptions=True)
        return sum(len(ids) for job, ids in jobs.items() if job.cancelled())

    def _close_pools(self) -> None:
        self.worker_pool.shutdown(wait=True, cancel_futures=True)
        self.job_pool.shutdown(wait=True, cancel_futures=True)
        self.intake_pool.shutdown(wait=True)

    # --- scheduled jobs -----------------------------------------------------------------------------

    async def _run_job(self, name: str, job: Callable[..., T], *args: Any) -> tuple[T | None, float]:
        """`job(self.factory, self.cfg, *args)` in the job pool, its run recorded: its result (None when
        it failed, which is logged) and when it started."""
        started = time.perf_counter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self.job_pool, self._recorded, name, job, self.factory, self.cfg, *args
            )
        except Exception as exc:
            log.error("job_failed", job=name, error=describe(exc))
            return None, started
        return result, started

    def _recorded(self, name: str, job: Callable[..., T], *args: Any) -> T:
        """Blocking, in a pool thread: `job(*args)`, its run recorded (`_record_run`)."""
        started_at = utcnow()
        try:
            result = job(*args)
        except Exception as exc:
            self._record_run(name, started_at, describe(exc))
            raise
        self._record_run(name, started_at, None)
        return result

    def _record_run(self, name: str, started_at: dt.datetime, error: str | None) -> None:
        """Blocking: one run of a scheduled job, in memory (the status request) and in `job_runs` (one
        row per job, whichever instance ran it last: `maildctl health`). A failure to record is logged,
        never raised: the job's own work is done (or failed) either way."""
        finished_at = utcnow()
        stats = self.job_stats.setdefault(name, {"runs": 0})
        stats["runs"] += 1
        stats.update(
            last_started_at=_iso(started_at),
            last_finished_at=_iso(finished_at),
            last_ok=error is None,
            last_error=error or "",
        )
        if error is None:
            stats["last_ok_at"] = _iso(finished_at)
        try:
            with transaction(self.factory) as session:
                row = session.get(JobRun, name)
                if row is None:
                    row = JobRun(name=name)
                    session.add(row)
                row.instance = self.instance[:200]
                row.started_at, row.finished_at = started_at, finished_at
                row.ok, row.error = error is None, (error or "")[:2000]
                if error is None:
                    row.last_ok_at = finished_at
        except Exception as exc:
            log.warning("job_run_not_recorded", job=name, error=describe(exc))

    async def _release_dead_claims(self) -> None:
        """Outbox rows a previous instance on this host claimed and was killed while sending: due now,
        not after the lease (flush would take them too; this says so in the log)."""
        loop = asyncio.get_running_loop()
        try:
            released = await loop.run_in_executor(self.job_pool, release_dead_claims, self.factory)
        except Exception as exc:
            log.warning("outbox_claims_not_released", error=describe(exc))
            return
        if released:
            log.info("outbox_claims_released", rows=released)

    async def _send_outbox(self) -> None:
        result, started = await self._run_job("outbox", flush)
        if result is not None and result != FlushResult(0, 0, 0):
            log.info(
                "outbox_sent",
                sent=result.sent,
                deferred=result.deferred,
                failed=result.failed,
                duration_ms=_ms_since(started),
            )

    async def _auto_close(self) -> None:
        result, started = await self._run_job("auto_close", auto_close)
        if result is None:
            return
        if result.closed:
            log.info(
                "auto_closed",
                tickets=result.closed[:100],
                count=len(result.closed),
                duration_ms=_ms_since(started),
            )
        if result.outbox_ids:
            await self._send_outbox()

    async def _escalate(self) -> None:
        result, started = await self._run_job("escalations", escalate)
        if result is None:
            return
        if result.fired:
            log.info(
                "escalations_fired",
                firings=[{"desk": d, "rule": r, "ticket": t} for d, r, t in result.fired[:100]],
                count=len(result.fired),
                duration_ms=_ms_since(started),
            )
        if result.outbox_ids:
            await self._send_outbox()

    async def _flood_digest(self) -> None:
        result, started = await self._run_job("flood_digest", send_flood_digests)
        if result is None:
            return
        if result.digests:
            log.info(
                "flood_digests_queued",
                digests=[{"desk_id": d, "sender": s, "mails": n} for d, s, n in result.digests[:100]],
                count=len(result.digests),
                duration_ms=_ms_since(started),
            )
        if result.outbox_ids:
            await self._send_outbox()

    async def _purge_raw_mail(self) -> None:
        older_than = dt.timedelta(days=self.cfg.spool_retention_days)
        purged, started = await self._run_job("spool_retention", purge_raw_mail, older_than)
        if purged is not None and purged.rows:
            log.info(
                "raw_mail_purged",
                rows=purged.rows,
                files=purged.files,
                bytes=purged.bytes,
                kept=purged.kept,
                duration_ms=_ms_since(started),
            )

    # --- spool recovery ------------------------------------------------------------------------------

    async def _recover(self) -> None:
        await self._sweep(RECOVERY_GRACE_SECONDS)

    async def _sweep(self, grace_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            ids = await loop.run_in_executor(
                self.intake_pool, self._recorded, "spool_recovery", self._received_rows, grace_seconds
            )
        except Exception as exc:
            log.error("recovery_failed", error=describe(exc))
            return
        pending = [i for i in ids if i not in self.in_flight]
        if pending:
            log.info("recovering", spool_ids=pending[:100], count=len(pending))
        for spool_id in pending:
            self._submit((spool_id,), None)

    def _received_rows(self, grace_seconds: float) -> list[int]:
        cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
        with self.factory() as session:
            return list(
                session.scalars(
                    select(SpoolEntry.id)
                    .where(SpoolEntry.state == "received", SpoolEntry.received_at <= cutoff)
                    .order_by(SpoolEntry.id)
                )
            )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _iso(value: dt.datetime) -> str:
    """A naive UTC time (as the database keeps them) in ISO 8601 with Z."""
    return value.isoformat() + "Z"
