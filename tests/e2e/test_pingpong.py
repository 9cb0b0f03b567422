"""Ping-pong (issue 5 item 5): a real auto-responder on loopback against a real `maild serve`.

The robot is an aiosmtpd server that maild uses as its smarthost; it answers every mail it receives by
sending a new mail back into maild's SMTP listener, to the desk address. The worst robot writes a fresh
subject, no threading headers and no Auto-Submitted: each of its answers opens a new ticket, whose
acknowledgement goes back to the robot. Only the per-address rate limit ([hygiene] autoreply_per_hour) stops
the exchange — it must stop by itself, and maild keeps running. A well-behaved robot (Auto-Submitted:
auto-replied) is answered zero times."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from maild.config import Hygiene
from tests.daemon import EX_OK, Factory, Serve, free_port, send, wait_until, write_config
from tests.e2e.helpers import TIMEOUT
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, crlf, make_desk, spool, tickets

ROBOT = "robot@robot.test"
PER_HOUR = Hygiene().autoreply_per_hour  # the default the config below keeps


class Robot:
    """Receives maild's outgoing mail (as its smarthost) and answers each one into maild's SMTP port."""

    def __init__(self, maild_port: int, auto_submitted: bool) -> None:
        self.maild_port = maild_port
        self.auto_submitted = auto_submitted
        self.received: list[bytes] = []
        self.answered = 0
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received.append(bytes(envelope.content))
        # Answer after the 250, as a real autoresponder does (maild's sender is waiting for this reply).
        asyncio.get_running_loop().create_task(self._answer())
        return "250 OK"

    async def _answer(self) -> None:
        n = next(self._serial)
        lines = [
            f"From: Robot <{ROBOT}>",
            f"To: {SUPPORT}",
            f"Subject: Notice {n} from the robot",  # fresh: no [tag], no Re:
            f"Message-ID: <notice-{n}-{time.monotonic_ns()}@robot.test>",
            "Date: Sat, 07 Mar 2026 09:00:00 +0000",
        ]
        if self.auto_submitted:
            lines.append("Auto-Submitted: auto-replied")
        lines += [
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "",
            f"Thank you for mail {n}.",
        ]
        await aiosmtplib.send(
            crlf("\n".join(lines)),
            sender=ROBOT,
            recipients=[SUPPORT],
            hostname="127.0.0.1",
            port=self.maild_port,
            timeout=TIMEOUT,
            start_tls=False,
        )
        with self._lock:
            self.answered += 1

    def count(self) -> int:
        with self._lock:
            return len(self.received)


@pytest.fixture
def pingpong(
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
    start: Callable[[Path], Serve],
) -> Iterator[Callable[[bool], tuple[Robot, Serve]]]:
    controllers: list[Controller] = []

    def run(auto_submitted: bool) -> tuple[Robot, Serve]:
        make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
        maild_port = free_port()
        robot = Robot(maild_port, auto_submitted)
        controller = Controller(robot, hostname="127.0.0.1", port=free_port())
        controller.start()
        controllers.append(controller)
        extra = (
            f'[outgoing]\nsmarthost = "127.0.0.1:{controller.port}"\ntimeout = 10\n'
            "[scheduler]\noutbox_seconds = 1\n"
        )
        config = write_config(
            tmp_path / "serve.toml",
            data_dir,
            database_url,
            listen={"smtp": f"127.0.0.1:{maild_port}"},
            extra=extra,
        )
        serve = start(config)
        # The first mail: a person's, from the robot's address; maild acknowledges it, and off they go.
        first = crlf(
            f"From: Robot Owner <{ROBOT}>\nTo: {SUPPORT}\nSubject: Please call me back\n"
            "Message-ID: <kickoff@robot.test>\nDate: Sat, 07 Mar 2026 09:00:00 +0000\n\nCall me.\n"
        )
        send(maild_port, first, [SUPPORT], sender=ROBOT)
        return robot, serve

    yield run
    for controller in controllers:
        controller.stop()


def settled(factory: Factory, robot: Robot, expected: int) -> Callable[[], bool]:
    """maild has processed everything the robot sent and the robot has received `expected` mails."""

    def check() -> bool:
        with factory() as s:
            rows = spool(s)
        return (
            robot.count() == expected
            and len(rows) == robot.answered + 1
            and all(row.state == "done" for row in rows)
        )

    return check


def test_a_robot_without_auto_submitted_is_stopped_by_the_rate_limit(
    pingpong: Callable[[bool], tuple[Robot, Serve]], session_factory: Factory
) -> None:
    robot, serve = pingpong(False)

    wait_until(settled(session_factory, robot, PER_HOUR), 2 * TIMEOUT, "the exchange to reach the limit", 0.1)
    time.sleep(3)  # and it stays there: nothing more goes out, nothing more comes in

    assert robot.count() == PER_HOUR  # at most autoreply_per_hour answers, then silence
    assert robot.answered == PER_HOUR
    assert serve.proc.poll() is None  # maild keeps running
    with session_factory() as s:
        rows = spool(s)
        assert len(rows) == PER_HOUR + 1 and len(tickets(s)) == PER_HOUR + 1
        assert all(row.outcome == "created" for row in rows)
        # The last of the robot's mails got no answer, and the row says why.
        assert "rate limit: 5 automatic mails in the last hour" in rows[-1].reason
    assert serve.stop() == EX_OK


def test_a_robot_that_says_auto_replied_is_answered_zero_times(
    pingpong: Callable[[bool], tuple[Robot, Serve]], session_factory: Factory
) -> None:
    robot, serve = pingpong(True)

    # The robot gets the acknowledgement of the person's first mail, answers it, and that answer is not
    # answered.
    wait_until(settled(session_factory, robot, 1), 2 * TIMEOUT, "the robot's answer processed", 0.1)
    time.sleep(3)

    assert (robot.count(), robot.answered) == (1, 1)
    assert serve.proc.poll() is None
    with session_factory() as s:
        first, robots = spool(s)
        assert (first.outcome, robots.outcome) == ("created", "created")
        assert "not answered: automatic mail (out-of-office: Auto-Submitted: auto-replied)" in robots.reason
    assert serve.stop() == EX_OK
