"""`maild serve`: the long-running daemon. One asyncio loop runs every LMTP and SMTP listener; the
pipeline runs in a process of its own (maild.ingress.pipeline_process), so a slow ticket never holds up
intake, not even for the GIL.

Life cycle:
  start    load the config (exit 78 when invalid, also an unreadable TLS certificate), check the database
           schema (exit 78 when it is missing or not this code's: storage.schema), bind every listener
           (exit 71 when an address cannot be bound; the web listener of `[web] listen` too, logged as
           `listening` with protocol "http", maild.ingress.web), then recover the spool: every row still
           'received' (a crash or a stop before it was processed) goes to the workers. The database may be
           down at start: intake answers 451 until it is back, and the recovery sweep tries again.
  running  a message is answered 250 once it is durable in the spool (see maild.ingress.listeners), then
           processed by a worker, then its queued replies are handed to the sender, as `maild pipe` does.
           The scheduler's jobs ([scheduler] in the config): `outbox` sends what is due (retries, and mail
           a crashed or busy sender left), `auto_close` closes inactive tickets, `escalations` runs the
           desks' escalation rules and reminders, `flood_digest` (every minute) sends agents one digest of
           a flooding sender's mails they got no notice of (maild.tickets.flood_digest), `quarantine_digest`
           (every minute) tells each desk's agents of mail quarantined since the desk's last digest, at
           most one digest per `[scheduler] quarantine_digest_seconds` (maild.tickets.quarantine_digest),
           `spool_recovery`
           picks up
           rows a transient failure left 'received'. Every run of a job is recorded in `job_runs`
           (`maildctl health` reads it). The control socket `<data_dir>/maild.sock` takes mail
           `maild pipe` spooled (maild.ingress.control): recorded and processed here, the verdict goes back to
           the waiting pipe; and it answers `maildctl health`'s status request.
  SIGHUP   reload the desk address cache and the templates, here and in the pipeline process (the rest of
           the config needs a restart).
  SIGTERM  stop accepting, let open mail transactions finish (up to DRAIN_SECONDS), let running pipeline
  SIGINT   jobs finish, exit 0. Jobs not started yet stay 'received' and are processed at the next start:
           a stop takes as long as one message, not as long as the backlog.

Here: start-up, the life cycle and shutdown. The pipeline process runs maild.ingress.pipeline_workers,
the scheduled jobs maild.ingress.serve_jobs, the control socket's requests maild.ingress.serve_control.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from maild.config import EX_CONFIG, Config, ConfigError, check_imap_secrets, load_config
from maild.ingress.imap_poll import run_pollers
from maild.ingress.intake import Intake
from maild.ingress.intake_caches import DeskAddresses
from maild.ingress.listeners import Connections, Listener, start_listeners, stop_listeners
from maild.ingress.log_fields import describe, iso_utc, ms_since
from maild.ingress.pipeline_process import PipelineProcess
from maild.ingress.scheduler import Job, start_scheduler
from maild.ingress.serve_control import ControlSocket
from maild.ingress.serve_jobs import ScheduledJobs, job_intervals
from maild.ingress.spool_worker import received_spool_ids
from maild.logs import configure, get_logger
from maild.outbound.templating import reload_templates
from maild.outbound.webhook_sender import run_sender
from maild.storage.db import make_engine, make_sessionmaker, urgent_counter
from maild.storage.models import utcnow
from maild.storage.schema import UNREACHABLE, check_database
from maild.tickets import automation  # noqa: F401  registers message.sent for the mail this process sends

if TYPE_CHECKING:
    from maild.ingress.web import WebPages

__all__ = ["Daemon", "job_intervals", "run_serve", "tls_context"]  # job_intervals: maildctl health

EX_OK, EX_OSERR = 0, 71
INTAKE_THREADS = 4  # spool writes and RCPT lookups; more would only queue on SQLite's write lock
RECOVERY_GRACE_SECONDS = 60.0  # younger 'received' rows are still on their way to a worker
DRAIN_SECONDS = 30.0

log = get_logger("maild.serve")


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


class Daemon:
    def __init__(self, cfg: Config, tls: ssl.SSLContext | None) -> None:
        self.cfg = cfg
        self.tls = tls
        # SQLite: the intake's commits go before the pipeline process's transactions (storage.db).
        urgent_shared = urgent_counter()
        self.engine = make_engine(cfg.database_url, cfg.busy_timeout_ms, urgent_shared)
        self.factory = make_sessionmaker(self.engine)
        self.addresses = DeskAddresses(self.factory, table_dir=cfg.data_dir)  # also keeps the pipe's table
        self.intake_pool = ThreadPoolExecutor(INTAKE_THREADS, thread_name_prefix="intake")
        self.workers = PipelineProcess(str(cfg.path) if cfg.path is not None else None, urgent_shared)
        self.connections = Connections(cfg.listen.max_connections)
        self.intake = Intake(cfg, self.factory, self.addresses, self.intake_pool, self.workers.on_spooled)
        self.stopping = asyncio.Event()
        # What the status request (`maildctl health`) reports:
        self.started_at = utcnow()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.bound: list[dict[str, str]] = []  # every listener's protocol and address, the control socket too
        self.scheduler: Any = None
        self.webhooks: asyncio.Task[None] | None = None
        self.scheduled = ScheduledJobs(cfg, self.factory, self.instance)
        self.control = ControlSocket(
            cfg, self.factory, self.addresses, self.intake_pool, self.workers, self.stopping, self._status
        )
        # The customers' pages ([web] listen): on this loop, reading in threads of their own.
        self.web: WebPages | None = None
        if cfg.web.listen is not None:
            from maild.ingress.web import WebPages  # aiohttp and Babel: imported only when the pages run

            self.web = WebPages(cfg, self.factory, self.intake.take)

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
        try:
            await self._start_web()
        except OSError as exc:
            log.error("cannot_listen", protocol="http", error=describe(exc))
            await stop_listeners(listeners)
            await self._stop_web()
            self._close_pools()
            return EX_OSERR
        pollers = await self._start(listeners)
        await self.stopping.wait()
        await self._shut_down(listeners, pollers)
        return EX_OK

    async def _start_web(self) -> None:
        if self.web is None or self.cfg.web.listen is None:
            return
        bound = await self.web.start(self.cfg.web.listen)
        log.info("listening", protocol="http", address=bound)
        self.bound.append({"protocol": "http", "address": bound})

    async def _stop_web(self) -> None:
        if self.web is not None:
            await self.web.stop()  # open requests get a few seconds; a page is one short read

    async def _start(self, listeners: list[Listener]) -> asyncio.Task[None]:
        """With the listeners bound: the control socket, the caches, the leftovers of a previous run, the
        scheduler and the IMAP pollers (their task)."""
        for listener in listeners:
            log.info("listening", protocol=listener.protocol, address=listener.bound)
            self.bound.append({"protocol": listener.protocol, "address": str(listener.bound)})
        control = await self.control.start()
        if control is not None:
            self.bound.append({"protocol": "control", "address": control})
        await self._reload(at_start=True)
        await self._sweep(grace_seconds=0)  # at start every 'received' row is left over from before
        await (
            self.scheduled.release_dead_claims()
        )  # before the first outbox run: a killed one's mail goes now
        runs = {**self.scheduled.runs(), "spool_recovery": (self._recover, False)}
        self.scheduler = start_scheduler(
            [
                Job(name, seconds, runs[name][0], at_start=runs[name][1])
                for name, seconds in job_intervals(self.cfg).items()
            ]
        )
        loop = asyncio.get_running_loop()
        pollers = loop.create_task(
            run_pollers(self.cfg, self.factory, self.workers.on_spooled, self.stopping)
        )
        # Webhook deliveries the pipeline (or maildctl, the pages) queued: POSTed on this loop.
        self.webhooks = loop.create_task(run_sender(self.factory, self.cfg, self.stopping))
        log.info(
            "ready",
            listeners=[f"{listener.protocol} {listener.bound}" for listener in listeners]
            + [f"{b['protocol']} {b['address']}" for b in self.bound if b["protocol"] == "http"],
            workers=self.cfg.listen.workers,
            max_message_bytes=self.cfg.listen.max_message_bytes,
        )
        return pollers

    async def _shut_down(self, listeners: list[Listener], pollers: asyncio.Task[None]) -> None:
        """Stop accepting, let open transactions, the pollers and running jobs finish, then close."""
        started = time.perf_counter()
        self.control.close()
        await stop_listeners(listeners)
        await self._stop_web()
        log.info("draining", sessions=len(self.connections.open), jobs=len(self.workers.jobs))
        cut_off = await self.connections.drain(DRAIN_SECONDS)
        # The pollers see `stopping`, finish the message in hand (spooled, then marked) and return.
        try:
            await asyncio.wait_for(pollers, DRAIN_SECONDS)
        except TimeoutError:
            log.warning("imap_pollers_cut_off")  # what they spooled is processed at the next start
        await self._stop_webhooks()
        self.scheduler.shutdown(
            wait=False
        )  # a job running now finishes in its thread (the pools wait for it)
        left = await self.workers.drain()
        self._close_pools()
        self.engine.dispose()
        log.info("stopped", sessions_cut_off=cut_off, left_for_recovery=left, duration_ms=ms_since(started))

    async def _stop_webhooks(self) -> None:
        """The sender sees `stopping` after the POSTs in hand (each one's timeout at most)."""
        if self.webhooks is None:
            return
        try:
            await asyncio.wait_for(self.webhooks, self.cfg.webhooks.timeout + 5)
        except TimeoutError:
            log.warning("webhook_sender_cut_off")  # a claimed delivery is due again when its lease ends

    def _stop(self, signum: int) -> None:
        if not self.stopping.is_set():
            log.info("stopping", signal=signal.Signals(signum).name, jobs=len(self.workers.jobs))
            self.stopping.set()

    async def _reload(self, at_start: bool = False) -> None:
        loop = asyncio.get_running_loop()
        # Every desk's overrides validated (a broken one is logged as template_invalid and not used).
        try:
            await loop.run_in_executor(self.intake_pool, reload_templates, self.cfg.template_dir)
        except Exception as exc:  # an unreadable template directory must not stop intake
            log.error("templates_not_loaded", error=describe(exc))
        if not at_start:
            self.workers.reload()
        try:
            count = await loop.run_in_executor(self.intake_pool, self.addresses.refresh)
        except Exception as exc:
            log.error("desk_addresses_not_loaded", error=describe(exc))
            return
        log.info("desk_addresses_loaded", count=count, reason="start" if at_start else "SIGHUP")

    def _status(self) -> dict[str, Any]:
        """The answer to a status request (maild.ingress.control): who runs, on what, and how its jobs
        went."""
        from maild.version import package_version

        now = utcnow()
        return {
            "status": "stopping" if self.stopping.is_set() else "running",
            "pid": os.getpid(),
            "instance": self.instance,
            "version": package_version(),
            "started_at": iso_utc(self.started_at),
            "uptime_seconds": round((now - self.started_at).total_seconds(), 1),
            "data_dir": str(self.cfg.data_dir),
            "listeners": self.bound,
            "workers": self.cfg.listen.workers,
            "pipeline_jobs": len(self.workers.jobs),  # queued or running in the workers
            "open_sessions": len(self.connections.open),
            "imap_accounts": [account.name for account in self.cfg.imap],
            "scheduled_jobs": self._scheduled_status(),
        }

    def _scheduled_status(self) -> list[dict[str, Any]]:
        """Per scheduled job: its interval, its next run and how its runs went."""
        scheduled = []
        for name, seconds in job_intervals(self.cfg).items():
            job = self.scheduler.get_job(name) if self.scheduler is not None else None
            next_run = job.next_run_time if job is not None else None
            scheduled.append(
                {
                    "name": name,
                    "interval_seconds": seconds,
                    "next_run_at": iso_utc(next_run.astimezone(dt.UTC).replace(tzinfo=None))
                    if next_run
                    else None,
                    **self.scheduled.stats.get(name, {"runs": 0}),
                }
            )
        return scheduled

    def _close_pools(self) -> None:
        self.workers.close()
        self.scheduled.close()
        self.intake.close()  # the group committer's threads, after the listeners drained
        self.intake_pool.shutdown(wait=True)

    # --- spool recovery ------------------------------------------------------------------------------

    async def _recover(self) -> None:
        await self._sweep(RECOVERY_GRACE_SECONDS)

    async def _sweep(self, grace_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            ids = await loop.run_in_executor(
                self.intake_pool,
                self.scheduled.recorded,
                "spool_recovery",
                self._received_rows,
                grace_seconds,
            )
        except Exception as exc:
            log.error("recovery_failed", error=describe(exc))
            return
        pending = [i for i in ids if i not in self.workers.in_flight]
        if pending:
            log.info("recovering", spool_ids=pending[:100], count=len(pending))
        for spool_id in pending:
            self.workers.submit((spool_id,), None)

    def _received_rows(self, grace_seconds: float) -> list[int]:
        return received_spool_ids(self.factory, grace_seconds)  # the on-demand worker's sweep too
