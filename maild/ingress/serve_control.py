"""The daemon's end of the control socket `<data_dir>/maild.sock` (the protocol: maild.ingress.control):
mail `maild pipe` spooled, recorded and processed here with the verdict going back to the waiting pipe;
and `maildctl health`'s status request, answered at once from memory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from maild.config import Config
from maild.ingress.control import MAX_LINE, STATUS, BadRequest, claim_socket, parse_request, socket_path
from maild.ingress.intake_caches import DeskAddresses
from maild.ingress.log_fields import describe
from maild.ingress.pipeline_process import PipelineProcess
from maild.logs import get_logger
from maild.mail.addresses import normalize
from maild.pipeline.runner import Result
from maild.storage.db import transaction, urgent
from maild.storage.files import content_path
from maild.storage.spool import record_received

CONTROL_READ_SECONDS = 10.0  # a pipe sends its one line at once

log = get_logger("maild.serve")


class ControlSocket:
    """Serves the control socket while the daemon runs; `status` makes the answer to a status request."""

    def __init__(
        self,
        cfg: Config,
        factory: sessionmaker[DbSession],
        addresses: DeskAddresses,
        pool: Executor,
        workers: PipelineProcess,
        stopping: asyncio.Event,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.cfg = cfg
        self.factory = factory
        self.addresses = addresses
        self.pool = pool
        self.workers = workers
        self.stopping = stopping
        self.status = status
        self._server: tuple[asyncio.Server, Path] | None = None

    async def start(self) -> str | None:
        """Listen; the address listened on, or None when the socket is off (logged: why)."""
        path = socket_path(self.cfg.data_dir)
        if path is None:
            log.warning("control_socket_off", reason="the data_dir path is too long for a unix socket")
            return None
        try:
            if not claim_socket(path):
                log.warning("control_socket_off", reason=f"another maild serve listens on {path}")
                return None
            server = await asyncio.start_unix_server(self._request, str(path), limit=MAX_LINE)
            path.chmod(0o660)  # the MTA's pipe runs as the daemon's user or group
        except OSError as exc:
            log.warning("control_socket_off", reason=describe(exc))
            return None
        self._server = server, path
        log.info("listening", protocol="control", address=f"unix:{path}")
        return f"unix:{path}"

    def close(self) -> None:
        """Stop listening: a pipe that finds no socket processes its mail itself."""
        if self._server is not None:
            server, path = self._server
            server.close()
            path.unlink(missing_ok=True)

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One pipe, one spooled mail (`_piped`); or a status request."""
        try:
            line = await asyncio.wait_for(reader.readline(), CONTROL_READ_SECONDS)
            request = parse_request(line)
            if request.get("request") == STATUS:
                answer = self.status()
            elif self.stopping.is_set():
                return  # no answer: the pipe processes the mail itself
            else:
                answer = await self._piped(request)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (BadRequest, ValueError, TimeoutError, OSError) as exc:
            log.warning("control_request_refused", error=describe(exc))
        finally:
            writer.close()

    async def _piped(self, request: dict[str, Any]) -> dict[str, Any]:
        """Record the mail's row and answer as LMTP would — "spooled" once the row is committed when the
        recipient is a desk's; else (no recipient given, or not a desk's) only after the pipeline
        decided, so that the pipe can say 67 for an unknown recipient."""
        loop = asyncio.get_running_loop()
        try:
            spool_id, known = await loop.run_in_executor(self.pool, self._record_piped, request)
        except BadRequest:
            raise
        except Exception as exc:  # database locked or down: the pipe exits 75, the MTA retries
            return {"outcome": "deferred", "reason": describe(exc), "ticket": None}
        if known:
            self.workers.submit((spool_id,), None)
            return {"outcome": "spooled", "reason": f"spooled as {spool_id}", "ticket": None}
        return await self._verdict(spool_id)

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
        with transaction(urgent(self.factory)) as session:  # the pipe waits for it
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

        def settle(result: Result | None) -> None:
            if not done.done():
                done.set_result(result)

        def tell(result: Result | None) -> None:  # in the worker thread
            loop.call_soon_threadsafe(settle, result)

        if not self.workers.submit((spool_id,), None, tell):
            # The same bytes' earlier row, queued or running already: durable, and on its way.
            return {"outcome": "spooled", "reason": "being processed already", "ticket": None}
        result = await done
        if result is None:
            return {"outcome": "deferred", "reason": "database unavailable", "ticket": None}
        return {"outcome": result.outcome, "reason": result.reason, "ticket": result.ticket_number}
