"""The `[web]` table: where `maild serve` serves the customers' pages, and what their links start with.

    [web]
    listen = "127.0.0.1:8025"                   # absent: no web listener
    public_url = "https://help.example.com"     # required with listen
    api_requests_per_minute = 120               # the JSON API's limit per token (/api/v1, issue 19)

The listener speaks plain HTTP; a reverse proxy in front terminates TLS (docs/install.md). A link carries
its recipient's secret token, so `public_url` must be https:// unless its host is this machine.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from maild.config_types import ConfigError, ListenAddress, Web

_LOOPBACK_NAMES = ("localhost",)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_listen(value: str) -> ListenAddress:
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("web.listen", f'must be "host:port" (e.g. "127.0.0.1:8025"), got {value!r}')
    return ListenAddress(host, int(port))


def _parse_public_url(value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "web.public_url", f'must be an http(s) URL, e.g. "https://help.example.com", got {value!r}'
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("web.public_url", f"must have no query, fragment or user name, got {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            "web.public_url",
            f"must be https:// (links carry a secret token); http:// only for a loopback host, got {value!r}",
        )
    return url


def parse_web(table: dict[str, Any]) -> Web:
    listen = _parse_listen(table["listen"]) if "listen" in table else None
    public_url = _parse_public_url(table["public_url"]) if "public_url" in table else ""
    if listen is not None and not public_url:
        raise ConfigError(
            "web.public_url",
            'missing: with web.listen set, say what links start with ("https://help.example.com")',
        )
    rate = table.get("api_requests_per_minute", 120)  # its kind (int) is checked by config_parse
    if not 1 <= rate <= 100_000:
        raise ConfigError("web.api_requests_per_minute", f"must be from 1 to 100000, got {rate!r}")
    return Web(listen=listen, public_url=public_url, api_requests_per_minute=rate)
