"""The pipeline of `maild serve` in a process of its own, so that it never holds the listeners' GIL.

    maild serve (listeners, group commit, control socket, scheduler)
        ── submit(spool ids) ──>  pipeline process: maild.ingress.pipeline_workers.PipelineWorkers
        <── told(result) ───────   (reader, parse processes, batch writer, sender)

Measured with bench/smtp_throughput.py (LMTP, 10 senders, SQLite): with the writer as a thread of the
daemon, intake accepted ~97 mail/s at a p50 of 94 ms; with no pipeline at all ~490 mail/s at 19 ms. The
writer is Python-bound (the stages, the ORM): as a thread it took the GIL from the event loop for every
mail it wrote.

`PipelineProcess` has the interface of PipelineWorkers that the daemon uses (submit, on_spooled,
in_flight, jobs, drain, close). The process is spawned on the first mail, dies with the daemon (Linux's
parent-death signal, as the parse processes), ignores SIGINT/SIGTERM (the daemon drains it) and is started
again on the next mail if it dies; a row it held stays 'received' and the recovery sweep submits it again.
Its log lines go to the daemon's stdout."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from maild.ingress.intake import Spooled
from maild.ingress.parse_pool import die_with_parent
from maild.logs import get_logger
from maild.pipeline.runner import Result

log = get_logger("maild.serve")

Tell = Callable[[Result | None], None]
DRAIN_SECONDS = 120.0  # what the daemon waits for the batch being written and its replies


@dataclass
class _Submitted:
    ids: tuple[int, ...]
    tell: Tell | None
    untold: int  # rows not reported yet: the message leaves in_flight at 0


class PipelineProcess:
    def __init__(self, config_path: str | None, urgent_shared: Any = None) -> None:
        self._config_path = config_path
        self._urgent_shared = urgent_shared  # storage.db.urgent_counter: the daemon's intake goes first
        self.in_flight: set[int] = set()
        self._submitted: dict[int, _Submitted] = {}
        self._next = 0
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._drained: asyncio.Future[int] | None = None
        self._stopping = False

    @property
    def jobs(self) -> list[tuple[int, ...]]:
        """Messages queued, parsing or being written (their spool ids)."""
        return [item.ids for item in self._submitted.values()]

    def on_spooled(self, spooled: Spooled) -> None:
        self.submit(spooled.spool_ids, spooled.message_id)

    def submit(self, spool_ids: tuple[int, ...], message_id: str | None, tell: Tell | None = None) -> bool:
        """Send one message's rows to the pipeline process; `tell` hears each row's result (None:
        deferred). False when every row is in flight already."""
        ids = tuple(i for i in dict.fromkeys(spool_ids) if i not in self.in_flight)
        if not ids or self._stopping:
            return False
        conn = self._connection()
        self._next += 1
        self._submitted[self._next] = _Submitted(ids, tell, len(ids))
        self.in_flight.update(ids)
        conn.send(("submit", self._next, ids, message_id))
        return True

    def reload(self) -> None:
        """SIGHUP: the process reloads its templates as the daemon does."""
        if self._conn is not None:
            self._conn.send(("reload",))

    async def drain(self) -> int:
        """Let the batch being written and its replies finish; how many rows were left 'received'."""
        self._stopping = True
        if self._conn is None:
            return 0
        self._drained = asyncio.get_running_loop().create_future()
        self._conn.send(("drain",))
        try:
            return await asyncio.wait_for(self._drained, DRAIN_SECONDS)
        except TimeoutError:
            log.warning("pipeline_process_cut_off")
            return len(self.in_flight)

    def close(self) -> None:
        self._stopping = True
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            asyncio.get_event_loop().remove_reader(conn.fileno())
            conn.close()
        if process is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()

    # --- the process ----------------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            context = multiprocessing.get_context("spawn")
            ours, theirs = context.Pipe()
            self._process = context.Process(
                target=run_pipeline_process,
                args=(self._config_path, theirs, os.getpid(), self._urgent_shared),
                name="maild-pipeline",
                daemon=False,
            )
            self._process.start()
            theirs.close()
            self._conn = ours
            asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)
            log.info("pipeline_process_started", pid=self._process.pid)
        return self._conn

    def _readable(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while conn.poll():
                self._received(conn.recv())
        except (EOFError, OSError):
            self._lost()

    def _received(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "told":
            _, token, result = message
            item = self._submitted.get(token)
            if item is None:
                return
            item.untold -= 1
            if item.tell is not None:
                item.tell(result)
            if item.untold <= 0:
                del self._submitted[token]
                self.in_flight.difference_update(item.ids)
        elif kind == "drained" and self._drained is not None and not self._drained.done():
            self._drained.set_result(int(message[1]))

    def _lost(self) -> None:
        """The process died (killed, out of memory): its rows stay 'received' for the recovery sweep, or
        the next submit starts a new one."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
        code = None
        if process is not None:
            process.join(1)
            code = process.exitcode
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(len(self.in_flight))
        else:
            log.error("pipeline_process_died", exit_code=code, rows=len(self.in_flight))
        for item in self._submitted.values():
            if item.tell is not None:
                for _ in range(item.untold):
                    item.tell(None)
        self._submitted.clear()
        self.in_flight.clear()


def run_pipeline_process(
    config_path: str | None, conn: Connection, parent: int, urgent_shared: Any = None
) -> None:
    """The pipeline process's main: PipelineWorkers fed from `conn` until told to drain."""
    if not die_with_parent(parent):
        return
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the daemon decides when this process stops
    from maild.config import load_config
    from maild.logs import configure

    configure()
    asyncio.run(_serve(load_config(config_path), conn, urgent_shared))


async def _serve(cfg: Any, conn: Connection, urgent_shared: Any) -> None:
    from maild.ingress.pipeline_workers import PipelineWorkers
    from maild.outbound.templating import reload_templates
    from maild.storage.db import make_engine, make_sessionmaker

    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms, urgent_shared)
    workers = PipelineWorkers(cfg, make_sessionmaker(engine))
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def tell(token: int) -> Tell:
        return lambda result: conn.send(("told", token, result))

    def readable() -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "submit":
                    _, token, ids, message_id = message
                    if not workers.submit(ids, message_id, tell(token)):
                        for _ in ids:  # in flight here already (a resubmission): reported by that one
                            conn.send(("told", token, None))
                elif message[0] == "reload":
                    reload_templates(cfg.template_dir)
                elif message[0] == "drain" and not done.done():
                    done.set_result(None)
        except (EOFError, OSError):  # the daemon is gone
            if not done.done():
                done.set_result(None)

    loop.add_reader(conn.fileno(), readable)
    await done
    loop.remove_reader(conn.fileno())
    left = await workers.drain()
    workers.close()
    engine.dispose()
    with suppress(OSError):  # the daemon is gone
        conn.send(("drained", left))
