"""The README's first command, `scripts/demo.sh`, run as written (in a directory of its own): it sets up,
pipes the sample mails, shows the tickets, the auto-replies and a customer's link, then runs `maild serve`
on SMTP 127.0.0.1:2525 with the ticket pages on 127.0.0.1:8025 — a mail sent there becomes a ticket, the
link opens the page, and Ctrl-C (SIGINT) stops it cleanly. The demo is SQLite's, so it runs in the SQLite
suite only (its fixed ports are then used by nothing else)."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import IS_POSTGRESQL
from tests.daemon import wait_until

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"http://127\.0\.0\.1:8025/t/[A-Za-z0-9_-]{44}")

pytestmark = pytest.mark.skipif(IS_POSTGRESQL, reason="the demo runs on the embedded SQLite default")


def test_the_demo_runs_as_the_readme_says(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    env = {**os.environ, "MAILD_DEMO_DIR": str(demo)}
    env.pop("MAILD_CONFIG", None)
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "demo.sh")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any('"event": "ready"' in line for line in lines), 120, "maild serve ready")
        shown = "".join(lines)
        assert shown.count(": exit 0") == 4  # three sample mails and the customer's reply, all taken
        assert "auto-replies in" in shown and "new: 2" in shown
        [url] = LINK.findall(shown)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and "Számla hiányzik" in page.read().decode()

        with smtplib.SMTP("127.0.0.1", 2525, timeout=10) as smtp:
            smtp.sendmail(
                "you@example.org",
                ["support@example.com"],
                b"From: you@example.org\r\nTo: support@example.com\r\nSubject: Hello\r\n\r\nFirst mail.\r\n",
            )
        config = str(demo / "maild.toml")

        def tickets() -> list[str]:
            out = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "maildctl"), "ticket", "list", "--json"],
                env={**env, "MAILD_CONFIG": config},
                capture_output=True,
                check=True,
            ).stdout
            return [t["subject"] for t in json.loads(out)]

        wait_until(lambda: "Hello" in tickets(), 60, "the mail sent to the demo's SMTP as a ticket")
    finally:
        process.send_signal(signal.SIGINT)  # the README's Ctrl-C
        code = process.wait(timeout=60)
        reader.join(timeout=10)
    assert code == 0
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [e["event"] for e in events if e.get("level") == "error"] == []
    assert events[-1]["event"] == "stopped"
