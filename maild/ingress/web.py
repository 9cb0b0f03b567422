"""The customers' web pages, served by `maild serve` on its own event loop (`[web] listen`; aiohttp).

    GET /t/<token>                  the ticket's page (maild.tickets.ticket_page): number, subject, status,
                                    priority, the customer-visible messages and their attachments
    GET /t/<token>/a/<attachment>   one of those attachments, as a download
    GET /static/maild.css           the pages' only style sheet

Anything else, and a token that opens nothing (unknown, revoked, its ticket deleted, its recipient
blocked), is a plain 404 page. Every request only reads (a GET changes nothing: mail scanners follow
links); the database is read in a small thread pool of its own, so page views never wait behind intake
threads nor hold up the loop. Pages are Jinja2 templates (templates/web/), autoescaped, without script;
every response carries a strict Content-Security-Policy. No access log: a request's path is a secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, ListenAddress
from maild.ingress.intake import Spooled
from maild.mail.tokens import load_secret
from maild.outbound.language import SOURCE_LANGUAGE, customer_word, render_context, status_word
from maild.outbound.link_tokens import link_key
from maild.storage.db import reading, transaction
from maild.storage.models import TICKET_STATUSES
from maild.templates import DEFAULT_DIR
from maild.tickets.ticket_page import PageFile, TicketPage, attachment_file, ticket_page

# (raw bytes, envelope recipient, ingress name, envelope sender) -> the spooled rows; raises if not taken.
TakeMail = Callable[[bytes, str, str, str], Awaitable[Spooled]]
WEB_DIR = DEFAULT_DIR / "web"
WEB_THREADS = 2
SECURITY_HEADERS = {
    # No script at all; the one style sheet is ours; no frames, no forms (yet), no base or plugin tricks.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the path: never pass it on
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # a page with a customer's mail stays out of shared caches
    "X-Robots-Tag": "noindex, nofollow",
}
STATUS_WORDS = {name: status_word(name, SOURCE_LANGUAGE) for name in TICKET_STATUSES}  # English

_environment = Environment(
    loader=FileSystemLoader(str(WEB_DIR)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.i18n"],
)
# Page text is written {{ _("English") }} / {% trans %}: the desk's language comes with the render (issue 18).
_environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]


def customer_words(name: str, language: str = SOURCE_LANGUAGE) -> str:
    """A status or priority as the customer reads it (a desk's custom status: its name, spaced)."""
    return customer_word(name, language)


def content_disposition(filename: str) -> str:
    """`attachment`, with the name in ASCII for old clients and in UTF-8 (RFC 6266) for the others."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return (
        f"attachment; filename=\"{ascii_name or 'attachment'}\"; filename*=UTF-8''{quote(filename, safe='')}"
    )


class WebPages:
    """The aiohttp application and the reads behind it; `start` binds, `stop` closes."""

    def __init__(self, cfg: Config, factory: sessionmaker[Session], take_mail: TakeMail) -> None:
        self.cfg = cfg
        self.factory = reading(factory)  # GET only reads: no write lock, never waits for a writer
        self.writer = factory  # a POST's change: `transaction(self.writer)` in the pool
        # A mail the pages make (a reply, a new ticket) enters like any other: spooled, then the pipeline.
        self.take_mail = take_mail
        self.link_key = link_key(load_secret(cfg.data_dir))
        self.pool = ThreadPoolExecutor(WEB_THREADS, thread_name_prefix="web")
        prefix = urlsplit(cfg.web.public_url).path.rstrip("/")  # behind a proxy under a path
        self.static_url = f"{prefix}/static/maild.css"
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/t/{token}", self.page)
        app.router.add_get(r"/t/{token}/a/{attachment:\d{1,18}}", self.attachment)
        app.router.add_get("/static/maild.css", self.style_sheet)
        app.on_response_prepare.append(_security_headers)
        app.middlewares.append(self._not_found_page)
        return app

    async def start(self, address: ListenAddress) -> str:
        """Bind (OSError when the address cannot be); the address as bound."""
        self.runner = web.AppRunner(self.application(), access_log=None)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, address.host, address.port, shutdown_timeout=5.0)
        await self.site.start()
        bound = self.runner.addresses  # the port as bound (port 0 in tests: a free one)
        host, port = bound[0][:2] if bound else (address.host, address.port)
        return str(ListenAddress(host, port))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self.pool.shutdown(wait=True)

    async def _read(self, read: Any, *args: Any) -> Any:
        def work() -> Any:
            with transaction(self.factory) as session:
                return read(session, *args)

        return await asyncio.get_running_loop().run_in_executor(self.pool, work)

    async def page(self, request: web.Request) -> web.Response:
        # Read and render in the pool: a long ticket's page is milliseconds the loop need not spend.
        html: str | None = await self._read(self._page_html, request.match_info["token"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    def _page_html(self, session: Session, token: str) -> str | None:
        found: TicketPage | None = ticket_page(session, self.link_key, token)
        if found is None:
            return None
        return self._render(
            "ticket.html.j2",
            page=found,
            token=token,
            status=customer_words(found.status, found.language),
            priority=customer_words(found.priority, found.language),
            language=found.language,
        )

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        token, attachment_id = request.match_info["token"], int(request.match_info["attachment"])
        found: PageFile | None = await self._read(
            attachment_file, self.link_key, self.cfg.attachment_dir, token, attachment_id
        )
        if found is None:
            raise web.HTTPNotFound()
        # Never shown in the browser: a download whatever the mail called it (an HTML file would run here).
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": content_disposition(found.filename),
        }
        return web.FileResponse(found.path, headers=headers)

    async def style_sheet(self, _request: web.Request) -> web.Response:
        text = await asyncio.get_running_loop().run_in_executor(self.pool, (WEB_DIR / "maild.css").read_text)
        return web.Response(text=text, content_type="text/css", charset="utf-8")

    @web.middleware
    async def _not_found_page(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            response = self._html("not_found.html.j2")
            response.set_status(404)
            return response

    def _html(self, template: str, **variables: Any) -> web.Response:
        return web.Response(
            text=self._render(template, **variables), content_type="text/html", charset="utf-8"
        )

    def _render(self, template: str, language: str = SOURCE_LANGUAGE, **variables: Any) -> str:
        """`language`: the desk's (maild.outbound.language): its gettext, words and dates override the
        environment's null translations."""
        context = {**render_context(language), "static_url": self.static_url, **variables}
        return _environment.get_template(template).render(context)


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
