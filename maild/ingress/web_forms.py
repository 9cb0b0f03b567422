"""What every form of the customers' pages needs (issue 18): a CSRF token, the client's address behind a
reverse proxy, in-memory rate limits, and the headers of a page that posts a form.

CSRF: double submit, signed. A form page sets a random cookie (HttpOnly, SameSite=Lax, Secure behind
https) and puts HMAC(cookie) into a hidden field; a POST is taken only when the field matches its cookie
(constant-time) and the browser does not say it comes from another site (page_forms.cross_site).
Another site can neither read the cookie nor make the field; no server state, so a restart breaks no
open form. /my and /new have no secret in their URL, so a field bound only to the page (as
maild.ingress.page_forms does for the ticket page, whose token is the secret) could be fetched and
replayed by anyone: here it is bound to the browser's cookie. (h18-act's page_forms was not there when
this was written.)

Rate limits are sliding windows kept in the daemon's memory: they reset on restart, which is fine for
throttling a script, and they need no table. The automatic-mail limits of maild.outbound.screening (in
the database) still cap what any one address is sent.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config
from maild.ingress.log_fields import describe
from maild.ingress.page_forms import cross_site
from maild.logs import get_logger

log = get_logger("maild.web")

CSRF_COOKIE = "maild_form"
CSRF_FIELD = "csrf"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class Csrf:
    def __init__(self, key: bytes, public_url: str) -> None:
        self.key = hmac.new(key, b"maild form tokens", hashlib.sha256).digest()
        parts = urlsplit(public_url)
        self.public_url = public_url
        self.path = parts.path.rstrip("/") + "/"
        self.secure = parts.scheme == "https"

    def _field(self, cookie: str) -> str:
        return _b64(hmac.new(self.key, b"csrf:" + cookie.encode("ascii", "replace"), hashlib.sha256).digest())

    def token(self, request: web.Request) -> tuple[str, str]:
        """(the hidden field's value, the cookie to set with the page or "" when the browser has one)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if len(cookie) == 43:
            return self._field(cookie), ""
        cookie = secrets.token_urlsafe(32)
        return self._field(cookie), cookie

    def set_cookie(self, response: web.StreamResponse, cookie: str) -> None:
        if cookie:
            response.set_cookie(
                CSRF_COOKIE, cookie, path=self.path, httponly=True, samesite="Lax", secure=self.secure
            )

    def valid(self, request: web.Request, form_value: str) -> bool:
        if cross_site(request, self.public_url):
            return False
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return len(cookie) == 43 and hmac.compare_digest(self._field(cookie), form_value)


def client_ip(request: web.Request) -> str:
    """The client's address; behind a reverse proxy on this host (a loopback peer), the address the proxy
    appended to X-Forwarded-For (the last one: earlier ones are whatever the client sent)."""
    peer = request.remote or ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    forwarded = request.headers.get("X-Forwarded-For", "")
    if loopback and forwarded.strip():
        last = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer


class RateLimit:
    """At most `count` hits per key in any `seconds`; at most `max_keys` keys remembered (the oldest
    forgotten first, so a flood of keys costs bounded memory)."""

    def __init__(self, count: int, seconds: float, max_keys: int = 20_000) -> None:
        self.count, self.seconds, self.max_keys = count, seconds, max_keys
        self._hits: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def hit(self, key: str, now: float | None = None) -> bool:
        """Record a hit for `key`; False (and nothing recorded) when it is over its limit."""
        at = time.monotonic() if now is None else now
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = collections.deque()
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
        self._hits.move_to_end(key)
        while hits and hits[0] <= at - self.seconds:
            hits.popleft()
        if len(hits) >= self.count:
            return False
        hits.append(at)
        return True


def html(text: str, status: int = 200) -> web.Response:
    # The security headers, forms posting here included, are added to every response by maild.ingress.web.
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


Render = Callable[..., str]


class Site(Protocol):
    """What the form pages (maild.ingress.web_account, web_new) use of maild.ingress.web.WebPages."""

    cfg: Config
    factory: sessionmaker[Session]  # reading sessions
    writer: sessionmaker[Session]
    link_key: bytes
    pool: ThreadPoolExecutor
    take_mail: Callable[[bytes, str, str, str], Awaitable[Any]]

    async def read(self, read: Any, *args: Any, **kwargs: Any) -> Any: ...
    async def write(self, change: Any, *args: Any, **kwargs: Any) -> Any: ...
    def send_soon(self, outbox_ids: list[int]) -> None: ...


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Pages:
    """The shared part of this module's pages: rendering, CSRF, reads and writes in the web threads."""

    def __init__(self, site: Site, render: Render, words: Callable[[str, str], str]) -> None:
        self.site, self.render, self.words = site, render, words
        self.csrf = Csrf(site.link_key, site.cfg.web.public_url)
        self.background: set[asyncio.Future[Any]] = set()

    def in_background(self, work: Awaitable[Any]) -> None:
        """Run `work` after the answer; its failure is logged (the customer can ask again)."""
        future = asyncio.ensure_future(work)
        self.background.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self.background.discard(future)
        error = None if future.cancelled() else future.exception()
        if error is not None:
            log.warning("web_form_mail_failed", error=describe(error))

    def send_soon(self, outbox_id: int | None) -> None:
        """Send this queued mail now, in the background, as the pipeline sends what it queues."""
        if outbox_id is not None:
            self.site.send_soon([outbox_id])

    async def read(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.site.read(work, *args, **kwargs)

    async def write(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.site.write(work, *args, **kwargs)

    async def blocking(self, work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.site.pool, work, *args)

    def form_page(
        self, request: web.Request, template: str, status: int = 200, **variables: Any
    ) -> web.Response:
        """A page with a form: its CSRF field, and the cookie the field is checked against."""
        field, cookie = self.csrf.token(request)
        response = html(self.render(template, csrf=field, csrf_field=CSRF_FIELD, **variables), status)
        self.csrf.set_cookie(response, cookie)
        return response

    def csrf_ok(self, request: web.Request, form: Mapping[str, Any]) -> bool:
        return self.csrf.valid(request, str(form.get(CSRF_FIELD, "")))

    def page(self, template: str, status: int = 200, **variables: Any) -> web.Response:
        return html(self.render(template, **variables), status)

    def refused(self, request: web.Request, **variables: Any) -> web.Response:
        """A POST whose CSRF field does not match (another site's form, or a page open over a restart
        of the browser): the form again, to be sent from here."""
        return self.form_page(request, "form_expired.html.j2", 403, again=request.path, **variables)

    def too_many(self, **variables: Any) -> web.Response:
        return self.page("form_too_many.html.j2", 429, **variables)
