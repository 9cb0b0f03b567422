"""Address normalisation shared by routing, identification and the CLI."""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$|^[^@\s]+@localhost$")


def normalize(address: str) -> str:
    return address.strip().strip("<>").lower()


def base_address(address: str) -> str:
    """support+token@example.com → support@example.com (subaddress dropped, lower-cased)."""
    local, at, domain = normalize(address).rpartition("@")
    if not at:
        return normalize(address)
    return f"{local.split('+', 1)[0]}@{domain}"


def is_valid(address: str) -> bool:
    return bool(_ADDRESS.match(address.strip()))


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]
