"""Connection limits, like Postfix's anvil and smtpd: per client address at most
`max_connections_per_client` open sessions and `max_connection_rate` connection attempts a minute
(ClientLimits); all listeners together at most `max_connections` open sessions, closed on shutdown
(Connections)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aiosmtpd.smtp import Session

from maild.config import IPNetwork, Listen

SHUTTING_DOWN = b"421 4.3.2 Service shutting down, try again later\r\n"
RATE_WINDOW_SECONDS = 60.0


def peer_label(session: Session | None) -> str:
    """A session's client for the log: `host:port`, or "unix" for a unix-socket client."""
    peer = session.peer if session is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer or "unix")


def client_address(peer: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a TCP peer (an IPv4-mapped IPv6 address as IPv4); None for a unix socket."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(str(peer[0]).partition("%")[0])  # without an IPv6 zone
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener: the same client as over IPv4
    return address


class ClientLimits:
    """Per client address, like Postfix's anvil: its open sessions and its connection attempts in the last
    minute. Shared by all listeners; only the event loop calls it, so no lock.

    Memory stays bounded: an address is forgotten when its last session closes and its newest attempt is
    a minute old, and at most `rate` timestamps are kept per address."""

    def __init__(
        self,
        per_client: int,
        rate: int,
        exceptions: tuple[IPNetwork, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client  # 0: no limit
        self.rate = rate  # per RATE_WINDOW_SECONDS; 0: no limit
        self.exceptions = exceptions
        self._clock = clock
        self._open: dict[str, int] = {}
        self._attempts: dict[str, deque[float]] = {}
        self._pruned_at = clock()

    @classmethod
    def from_config(cls, listen: Listen) -> ClientLimits:
        return cls(
            listen.max_connections_per_client, listen.max_connection_rate, listen.client_limit_exceptions
        )

    def key(self, peer: Any) -> str | None:
        """The address the limits count `peer` under; None when they do not apply to it: a unix-socket
        client (only the MTA's group can connect) or an address in `client_limit_exceptions`."""
        address = client_address(peer)
        if address is None or any(address in network for network in self.exceptions):
            return None
        return str(address)

    def check(self, client: str) -> tuple[str, int] | None:
        """Count a connection attempt from `client`; the limit it exceeds (its config key and value), or
        None. Refused attempts count too: a client that keeps hammering stays refused until it pauses."""
        now = self._clock()
        self._prune(now)
        if self.rate:
            attempts = self._attempts.get(client)
            if attempts is None:
                attempts = self._attempts[client] = deque(maxlen=self.rate)
            # The newest `rate` attempts are kept: all of them within the window makes this one too many.
            over = len(attempts) == self.rate and now - attempts[0] < RATE_WINDOW_SECONDS
            attempts.append(now)
            if over:
                return "max_connection_rate", self.rate
        if self.per_client and self._open.get(client, 0) >= self.per_client:
            return "max_connections_per_client", self.per_client
        return None

    def opened(self, client: str) -> None:
        self._open[client] = self._open.get(client, 0) + 1

    def closed(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)

    def open_from(self, client: str) -> int:
        return self._open.get(client, 0)

    def tracked(self) -> int:
        """How many addresses are remembered (for tests: memory stays bounded)."""
        return len(self._open.keys() | self._attempts.keys())

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < RATE_WINDOW_SECONDS:
            return
        self._pruned_at = now
        for client in [c for c, a in self._attempts.items() if not a or now - a[-1] >= RATE_WINDOW_SECONDS]:
            del self._attempts[client]


class OpenSession(Protocol):
    """What Connections needs of a session (maild.ingress.listeners' protocol classes)."""

    @property
    def closing(self) -> bool: ...

    @property
    def in_transaction(self) -> bool: ...

    def shut(self, reply: bytes) -> None: ...


class Connections:
    """The open sessions of all listeners: counted against max_connections, closed on shutdown."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: set[OpenSession] = set()

    def admit(self, session: OpenSession) -> bool:
        if len(self.open) >= self.limit:
            return False
        self.open.add(session)
        return True

    def release(self, session: OpenSession) -> None:
        self.open.discard(session)

    async def drain(self, grace_seconds: float) -> int:
        """Close idle sessions now (421); one in a mail transaction may finish it within the grace time.

        Returns how many sessions were cut off in the middle of a transaction (their clients retry)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        cut_off = 0
        while self.open:
            late = loop.time() >= deadline
            for session in list(self.open):
                if session.closing:
                    continue
                if not session.in_transaction:
                    session.shut(SHUTTING_DOWN)
                elif late:
                    session.shut(SHUTTING_DOWN)
                    cut_off += 1
            if late and all(s.closing for s in self.open):
                break
            await asyncio.sleep(0.05)
        return cut_off
