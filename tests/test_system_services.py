"""What `scripts/test.sh` installs from Debian's packages (PostgreSQL, Postfix, Dovecot) must not become a
network service of the machine: the tests run private instances on loopback, so the packages' own services
stay disabled, and their configs listen on loopback only.

The script records each service it installed in `.venv/.maild-system-packages`; services it found already
installed belong to the machine's admin and are not judged here."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

RECORD = ROOT / ".venv" / ".maild-system-packages"
# The ports these packages' system services listen on by default.
SERVICE_PORTS = {25, 24, 110, 143, 465, 587, 993, 995, 4190, 5432}


def installed_by_the_test_script() -> list[str]:
    if not RECORD.exists():
        return []
    return sorted(set(RECORD.read_text().split()))


def listening_sockets() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket, from /proc (no iproute2 needed)."""
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            # /proc prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            found.append((str(ipaddress.ip_address(words)), int(hex_port, 16)))
    return found


def test_no_package_service_listens_beyond_loopback() -> None:
    exposed = [
        (address, port)
        for address, port in listening_sockets()
        if port in SERVICE_PORTS and not ipaddress.ip_address(address).is_loopback
    ]
    assert exposed == []


@pytest.mark.parametrize("service", ["postfix", "dovecot", "postgresql"])
def test_installed_services_stay_disabled_and_on_loopback(service: str) -> None:
    if service not in installed_by_the_test_script():
        pytest.skip(f"{service} was not installed by scripts/test.sh on this machine")
    if shutil.which("systemctl"):
        state = subprocess.run(["systemctl", "is-enabled", service], capture_output=True, text=True)
        assert state.stdout.strip() != "enabled"
    if service == "postfix":
        interfaces = subprocess.run(["postconf", "-h", "inet_interfaces"], capture_output=True, text=True)
        assert interfaces.stdout.strip() == "loopback-only"
    if service == "dovecot":
        listen = subprocess.run(["doveconf", "-h", "listen"], capture_output=True, text=True)
        assert listen.stdout.strip() == "127.0.0.1, ::1"
