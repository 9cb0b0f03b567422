"""What every endpoint of the JSON API (maild.ingress.web_api) shares: its errors, as JSON, the request
body read within a limit, the fields of a JSON object checked, and the per-token rate limit.

Every error is `{"error": {"status": N, "message": "…"}}` with that HTTP status: 400 malformed JSON or
parameters, 401 no or a bad token, 403 a read token on a write, 404 unknown ticket or route, 405 a method
the route has not, 409 a conflict (a merged ticket, one changed meanwhile), 413 a body over MAX_BODY,
422 well-formed values that name nothing known (an unknown status, agent, priority), 429 over the
token's rate (with Retry-After), 500 a fault of maild's (logged; never a traceback), 503 the database
busy (with Retry-After)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from maild.ingress.log_fields import describe
from maild.logs import get_logger
from maild.tickets.ticket_checks import InvalidValue, MalformedValue

log = get_logger("maild.api")
API_PREFIX = "/api/v1"
MAX_BODY = 1_000_000  # a reply's text is far smaller; a body over it is 413 before it is read
BUSY_RETRY_AFTER = "5"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer of the API's other than success: its status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"status": status, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _http_error(error: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no such route, a method the route has not, a body too large) as ours."""
    allow = error.headers.get("Allow")
    messages = {
        404: "no such endpoint: see /api/v1/openapi.json",
        405: f"this endpoint takes {allow}: see /api/v1/openapi.json",
        413: f"the body is over {MAX_BODY} bytes",
    }
    return error_response(
        error.status, messages.get(error.status, error.reason), {"Allow": allow} if allow else None
    )


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api/, every error as the JSON above; the customers' pages are left to their own."""
    if not request.path.startswith(API_PREFIX + "/") and request.path != API_PREFIX:
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.message, error.headers)
    except MalformedValue as error:
        return error_response(400, str(error))
    except InvalidValue as error:
        return error_response(422, str(error))
    except (StaleDataError, IntegrityError):
        return error_response(409, "the ticket changed meanwhile (deleted or merged): read it again")
    except OperationalError as error:  # locked or unreachable: nothing was changed
        log.warning("api_database_busy", error=describe(error))
        return error_response(503, "the database is busy: try again", {"Retry-After": BUSY_RETRY_AFTER})
    except web.HTTPException as error:
        return _http_error(error)
    except Exception as error:  # a bug of ours: said, logged, never a traceback
        log.error("api_failed", error=describe(error))
        return error_response(500, "maild failed to answer this request; its log says why")


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's body: a JSON object of at most MAX_BODY bytes (413 over it, 400 for anything else)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"the body is over {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"the body is over {MAX_BODY} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ApiError(400, f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object, e.g. {"status": "closed"}')
    return body


def fields(body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """400 for a missing required field or one the endpoint does not take (a typo must not pass)."""
    missing = [name for name in required if name not in body]
    if missing:
        raise ApiError(400, f"missing field {missing[0]!r}: this endpoint takes {_names(required, optional)}")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}: this endpoint takes {_names(required, optional)}")


def _names(required: tuple[str, ...], optional: tuple[str, ...]) -> str:
    return ", ".join([*required, *(f"{name} (optional)" for name in optional)])


def text(body: dict[str, Any], name: str, *, nullable: bool = False) -> str | None:
    """The field `name` as a string (400 for another JSON type; null only when `nullable`)."""
    value = body.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        allowed = "a string or null" if nullable else "a string"
        raise ApiError(400, f"field {name!r} must be {allowed}, got {json.dumps(value)[:40]}")
    return value


def string_list(body: dict[str, Any], name: str) -> tuple[str, ...]:
    """The optional field `name` as a list of strings (absent or null: empty; 400 for anything else)."""
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, f"field {name!r} must be a list of strings, got {json.dumps(value)[:40]}")
    return tuple(value)


def nonempty(value: str, name: str) -> str:
    """A text to store (a reply, a note), CRLF made LF and trimmed; 422 when nothing is left."""
    cleaned = value.replace("\r\n", "\n").strip()
    if not cleaned:
        raise ApiError(422, f"field {name!r} is empty")
    return cleaned


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """A token bucket per API token: `per_minute` requests, refilled evenly (a burst of `per_minute`,
    then one every 60/per_minute s). In memory: a restart forgets it, and each daemon has its own."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0  # per second
        self.clock = clock
        self.buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> int | None:
        """None when the request may go on; else the seconds to wait (Retry-After)."""
        now = self.clock()
        bucket = self.buckets.setdefault(key, _Bucket(self.capacity, now))
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.refill)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self.refill))
