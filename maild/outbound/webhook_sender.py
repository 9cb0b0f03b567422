"""The webhook sender: POST due deliveries (maild.tickets.webhook_queue queued them) to their webhooks.

Each POST carries the stored body as it is, with
    Content-Type: application/json
    User-Agent: maild/<version>
    X-Maild-Event: <event kind>
    X-Maild-Delivery: <this delivery's uuid>
    X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body, keyed with the webhook's secret>
A 2xx answer delivers it. Anything else (another status, a refused connection, no answer within
`[webhooks] timeout`) is retried after BACKOFF (1 m, 5 m, 30 m, 2 h, 6 h, 12 h, then daily) until
`[webhooks] max_attempts`, then the delivery is failed (`maildctl webhook redeliver` queues it again).

Claims: a due delivery is taken by moving its next attempt a lease ahead, in a short transaction that
locks it (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises), so two daemons
never post one delivery at once. A sender that dies while posting leaves it due again when the lease
ends: at least once, never lost (a receiver dedups by X-Maild-Delivery). At `maild serve`'s start, claims of
this host's processes that are no longer running are released at once (release_dead_claims, as the
outbox does), not after the lease."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import aiohttp
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.logs import get_logger
from maild.outbound.sender import holder, release_claims_of_the_dead
from maild.storage.db import reading, transaction
from maild.storage.models import Webhook, WebhookDelivery, utcnow

BACKOFF = tuple(
    dt.timedelta(minutes=m) for m in (1, 5, 30, 2 * 60, 6 * 60, 12 * 60, 24 * 60)
)  # after the 1st, 2nd … failed attempt; the last one repeats
CLAIM_BATCH = 20  # posted at once, each with its own timeout
LEASE_MARGIN = dt.timedelta(seconds=60)  # beyond the POST's timeout: the claim outlives the attempt

log = get_logger("maild.webhooks")
T = TypeVar("T")


@dataclass(frozen=True)
class Claimed:
    id: int
    delivery_id: str
    event: str
    body: bytes
    webhook: str
    url: str
    secret: str


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the HTTP status, None when there was no answer
    error: str  # "" when delivered
    ms: int


@dataclass(frozen=True)
class SendResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


def backoff(attempts: int) -> dt.timedelta:
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def signature(secret: str, body: bytes) -> str:
    """GitHub's X-Hub-Signature-256 value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def claim(factory: sessionmaker[Session], cfg: Config, now: dt.datetime) -> list[Claimed]:
    """Take up to CLAIM_BATCH due deliveries for this sender, for the POST's timeout and a margin."""
    due = (WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
    # Asked first in a reading transaction: the sender polls every few seconds, and on SQLite a
    # writing transaction takes the write lock that intake and the pipeline wait for.
    with transaction(reading(factory)) as session:
        if session.scalar(select(WebhookDelivery.id).where(*due).limit(1)) is None:
            return []
    query = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(*due)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(CLAIM_BATCH)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    lease = dt.timedelta(seconds=cfg.webhooks.timeout) + LEASE_MARGIN
    me = holder()
    with transaction(factory) as session:
        taken = []
        for delivery, webhook in session.execute(query):
            delivery.next_attempt_at, delivery.claimed_by = now + lease, me
            taken.append(
                Claimed(
                    delivery.id,
                    delivery.delivery_id,
                    delivery.event,
                    bytes(delivery.body),
                    webhook.name,
                    webhook.url,
                    webhook.secret,
                )
            )
    return taken


def release_dead_claims(factory: sessionmaker[Session], now: dt.datetime | None = None) -> int:
    """Pending deliveries claimed by processes of this host that are no longer running (a daemon killed
    mid-POST) become due now. Returns how many."""
    return release_claims_of_the_dead(factory, WebhookDelivery, WebhookDelivery.state == "pending", now)


@cache
def _user_agent() -> str:
    from maild.version import package_version  # importlib.metadata: once, not per POST

    return f"maild/{package_version()}"


def headers(claimed: Claimed) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": _user_agent(),
        "X-Maild-Event": claimed.event,
        "X-Maild-Delivery": claimed.delivery_id,
        "X-Hub-Signature-256": signature(claimed.secret, claimed.body),
    }


async def post(client: aiohttp.ClientSession, claimed: Claimed, timeout: float) -> Outcome:
    """One POST; never raises for what the other end does (refuses, stalls, answers garbage)."""
    started = time.perf_counter()
    try:
        async with client.post(
            claimed.url,
            data=claimed.body,
            headers=headers(claimed),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,  # a redirect would re-send the signed body somewhere not configured
        ) as response:
            await response.read()
            ok = 200 <= response.status < 300
            error = "" if ok else f"HTTP {response.status} {response.reason or ''}".rstrip()
            return Outcome(response.status, error, _ms(started))
    except TimeoutError:
        return Outcome(None, f"no answer within {timeout:g} s", _ms(started))
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:2000], _ms(started))


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def record(
    factory: sessionmaker[Session], cfg: Config, claimed: Claimed, outcome: Outcome, now: dt.datetime
) -> str:
    """Write one attempt's result; returns the delivery's state afterwards."""
    with transaction(factory) as session:
        delivery = session.get(WebhookDelivery, claimed.id)
        if delivery is None:  # its webhook was removed meanwhile
            return "removed"
        delivery.attempts += 1
        delivery.claimed_by = ""
        delivery.last_status, delivery.last_error = outcome.status, outcome.error
        delivery.last_attempt_at = now
        if not outcome.error:
            delivery.state, delivery.delivered_at = "delivered", now
        elif delivery.attempts >= cfg.webhooks.max_attempts:
            delivery.state = "failed"
        else:
            delivery.next_attempt_at = now + backoff(delivery.attempts)
        _log(claimed, outcome, delivery)
        return delivery.state


def _log(claimed: Claimed, outcome: Outcome, delivery: WebhookDelivery) -> None:
    fields: dict[str, Any] = {
        "webhook": claimed.webhook,
        "delivery": claimed.delivery_id,
        "kind": claimed.event,  # `event` is the log line's own name
        "status": outcome.status,
        "attempts": delivery.attempts,
        "duration_ms": outcome.ms,
    }
    if delivery.state == "delivered":
        log.info("webhook_delivered", **fields)
    elif delivery.state == "failed":
        log.warning("webhook_failed", error=outcome.error, **fields)
    else:
        retry_at = delivery.next_attempt_at.isoformat() + "Z"
        log.info("webhook_retry", error=outcome.error, next_attempt_at=retry_at, **fields)


async def send_due(
    factory: sessionmaker[Session],
    cfg: Config,
    now: dt.datetime | None = None,
    blocking: Callable[..., Any] | None = None,
) -> SendResult:
    """Post every due delivery, batch after batch. `blocking(fn, *args)` runs the database work (default:
    the loop's executor), so that the loop never waits for the database."""

    async def run(fn: Callable[..., T], *args: Any) -> T:
        if blocking is not None:
            result: T = await blocking(fn, *args)
            return result
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    at = now or utcnow()
    counts = {"delivered": 0, "pending": 0, "failed": 0}
    batch = await run(claim, factory, cfg, at)
    if not batch:  # the usual poll: no HTTP client opened for nothing
        return SendResult(0, 0, 0)
    async with aiohttp.ClientSession() as client:
        while batch:
            outcomes = await asyncio.gather(*(post(client, c, cfg.webhooks.timeout) for c in batch))
            for claimed, outcome in zip(batch, outcomes, strict=True):
                state = await run(record, factory, cfg, claimed, outcome, now or utcnow())
                counts[state] = counts.get(state, 0) + 1
            batch = await run(claim, factory, cfg, at) if len(batch) == CLAIM_BATCH else []
    return SendResult(counts["delivered"], counts["pending"], counts["failed"])


def send_due_now(factory: sessionmaker[Session], cfg: Config, now: dt.datetime | None = None) -> SendResult:
    """Blocking: `send_due` on a loop of its own (maildctl, tests)."""
    return asyncio.run(send_due(factory, cfg, now))


async def run_sender(factory: sessionmaker[Session], cfg: Config, stopping: asyncio.Event) -> None:
    """`maild serve`'s webhook sender: every `[webhooks] poll_seconds`, what is due, until `stopping`.
    A failure (the database down) is logged and tried again at the next poll."""
    try:
        released = await asyncio.get_running_loop().run_in_executor(None, release_dead_claims, factory)
        if released:
            log.info("webhook_claims_released", deliveries=released)
    except Exception as exc:  # the sender runs anyway: the claims end with their lease
        log.warning("webhook_claims_not_released", error=f"{type(exc).__name__}: {exc}")
    while not stopping.is_set():
        try:
            await send_due(factory, cfg)
        except Exception as exc:
            log.error("webhooks_not_sent", error=f"{type(exc).__name__}: {exc}")
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), cfg.webhooks.poll_seconds)
