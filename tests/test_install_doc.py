"""docs/install.md is run as written: its marked blocks install maild into a fresh venv (from this checkout,
with the lock file's versions), write the config, initialise the data directory and add a desk; then the
installed `maild serve` takes a mail over LMTP and its auto-reply reaches the smarthost. Only the paths
(into a temporary folder), the two ports (free loopback ones) and the switch to the `maild` user change.

The systemd unit is held to the same paths: what it starts is what the guide links, and it may write where
the guide puts the data and the LMTP socket."""

from __future__ import annotations

import configparser
import re
import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import ROOT
from tests.daemon import TIMEOUT, free_port, wait_until
from tests.test_sender import Recorder

GUIDE = ROOT / "docs" / "install.md"
UNIT = ROOT / "systemd" / "maild.service"
PATHS = ("/opt/maild", "/usr/local/bin", "/etc/maild", "/var/lib/maild")


def guide_blocks() -> dict[str, str]:
    """The fenced blocks after `<!-- install: NAME -->`, by name, in the guide's order."""
    found = re.findall(r"<!-- install: ([a-z-]+) -->\n```sh\n(.*?)```", GUIDE.read_text(), re.S)
    return dict(found)


def localise(block: str, root: Path, lmtp_port: int, smtp_port: int) -> str:
    for path in PATHS:
        block = block.replace(path, f"{root}{path}")
    block = block.replace("runuser -u maild -- ", "").replace("-o maild -g maild ", "")
    return block.replace("127.0.0.1:2424", f"127.0.0.1:{lmtp_port}").replace(
        '127.0.0.1:25"', f'127.0.0.1:{smtp_port}"'
    )


@pytest.fixture
def smarthost() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_the_guides_blocks_are_in_order_and_name_the_units_paths() -> None:
    blocks = guide_blocks()
    assert list(blocks) == ["program", "config", "init", "desk"]
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    # The unit starts the commands the guide links, with the config the guide writes.
    assert "ln -sf /opt/maild/venv/bin/maild" in blocks["program"] and "/usr/local/bin/" in blocks["program"]
    assert service["ExecStart"] == "/usr/local/bin/maild serve"
    assert service["ExecStartPre"] == "/usr/local/bin/maild check-config"
    assert service["Environment"] == "MAILD_CONFIG=/etc/maild/maild.toml"
    assert 'data_dir = "/var/lib/maild"' in blocks["config"]
    # It may write the data dir and the run dir where the guide's unix socket goes, and nothing else.
    writable = service["ReadWritePaths"].split()
    assert writable == ["/var/lib/maild", "/run/maild"]
    socket_paths = re.findall(r'"unix:(/[^"]+)"', GUIDE.read_text())
    assert socket_paths and all(any(p.startswith(w + "/") for w in writable) for p in socket_paths)


def test_install_guide_runs_and_the_installed_daemon_answers_mail(
    tmp_path: Path, smarthost: tuple[Recorder, int]
) -> None:
    recorder, smtp_port = smarthost
    lmtp_port = free_port()
    for path in PATHS:
        (tmp_path / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    script = "set -euo pipefail\n" + "\n".join(
        localise(block, tmp_path, lmtp_port, smtp_port) for block in guide_blocks().values()
    )
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    maild = tmp_path / "usr/local/bin/maild"
    assert maild.is_symlink() and maild.resolve() == tmp_path / "opt/maild/venv/bin/maild"
    config = tmp_path / "etc/maild/maild.toml"
    serve = subprocess.Popen(
        [str(maild), "--config", str(config), "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: _lmtp_answers(lmtp_port), TIMEOUT, "the installed daemon's LMTP listener")
        with smtplib.LMTP("127.0.0.1", lmtp_port, timeout=TIMEOUT) as lmtp:
            refused = lmtp.sendmail(
                "alice@customer.example",
                ["support@example.com"],
                b"From: Alice <alice@customer.example>\r\nTo: support@example.com\r\n"
                b"Subject: Printer on fire\r\nMessage-ID: <install-guide@customer.example>\r\n\r\nHelp!\r\n",
            )
        assert refused == {}
        # The customer's auto-reply and the agent's notice, each with a VERP envelope sender.
        wait_until(lambda: len(recorder.envelopes) == 2, TIMEOUT, "two mails at the smarthost")
        by_recipient = {tuple(rcpt_tos): (mail_from, raw) for mail_from, rcpt_tos, raw in recorder.envelopes}
        assert sorted(by_recipient) == [("alice@customer.example",), ("anna@example.com",)]
        for mail_from, raw in by_recipient.values():
            assert mail_from.startswith("bounces+")
            assert re.search(rb"Subject: .*\[SUP-\d\d-\d\d-1\]", raw)
    finally:
        serve.terminate()
        output = serve.communicate(timeout=TIMEOUT + 30)[0].decode(errors="replace")
    assert serve.returncode == 0, output
    shutil.rmtree(tmp_path / "opt", ignore_errors=True)


def _lmtp_answers(port: int) -> bool:
    try:
        with smtplib.LMTP("127.0.0.1", port, timeout=2) as lmtp:
            return lmtp.noop()[0] == 250
    except OSError:
        return False
