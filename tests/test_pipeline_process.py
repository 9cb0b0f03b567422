"""`maild serve` runs its pipeline in a process of its own (maild.ingress.pipeline_process): the mail is
processed there, a pipeline process that dies is replaced and its mail still becomes a ticket, and a stop
drains it and leaves no process behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import (
    EX_OK,
    Factory,
    free_port,
    send,
    start_fixture,  # noqa: F401 (the fixture `start`)
    wait_until,
    write_config,
)
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, mail, make_desk, spool, tickets


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def serve_config(tmp_path: Path, data_dir: Path, database_url: str, smtp_port: int) -> Path:
    listen = {"smtp": f"127.0.0.1:{smtp_port}"}
    return write_config(tmp_path / "serve.toml", data_dir, database_url, listen=listen)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _outcomes(factory: Factory) -> list[str | None]:
    with factory() as s:
        return [row.outcome for row in spool(s)]


def test_the_pipeline_runs_in_a_child_that_is_replaced_when_it_dies(
    serve_config: Path, smtp_port: int, session_factory: Factory, start: Any
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    serve = start(serve_config)
    send(smtp_port, mail(message_id="<one@customer.example>"), [SUPPORT])
    wait_until(lambda: _outcomes(session_factory) == ["created"], what="the first mail a ticket")
    [started] = serve.find("pipeline_process_started")
    assert started["pid"] in _children(serve.proc.pid)
    assert started["pid"] != serve.proc.pid

    os.kill(started["pid"], signal.SIGKILL)
    serve.wait_for("pipeline_process_died")
    send(smtp_port, mail(message_id="<two@customer.example>", subject="Second"), [SUPPORT])
    wait_until(lambda: _outcomes(session_factory) == ["created", "created"], what="the second a ticket")
    second = serve.find("pipeline_process_started")[1]
    assert second["pid"] != started["pid"]
    with session_factory() as s:
        assert len(tickets(s)) == 2

    assert serve.stop() == EX_OK
    assert serve.find("stopped")[0]["left_for_recovery"] == 0
    wait_until(lambda: not Path(f"/proc/{second['pid']}").exists(), what="the pipeline process gone")
