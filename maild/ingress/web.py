"""The customers' web pages, served by `maild serve` on its own event loop (`[web] listen`; aiohttp).

    GET /t/<token>                  the ticket's page (maild.tickets.ticket_page): number, subject, status,
                                    priority, the customer-visible messages and their attachments
    GET /t/<token>/a/<attachment>   one of those attachments, as a download
    GET /static/maild.css           the pages' only style sheet
    POST /t/<token>/reply, /close, GET+POST /t/<token>/rate/<message>: the customer acts (web_actions)
    /api/v1/…                       the JSON API for agents' tools, with bearer tokens (web_api)

Anything else, and a token that opens nothing (unknown, revoked, its ticket deleted, its recipient
blocked), is a plain 404 page. A GET only reads (mail scanners follow links); only a POST with the
page's CSRF token changes anything (maild.ingress.page_forms). The database is read in a small thread pool
of its own, so page views never wait behind intake threads nor hold up the loop. Pages are Jinja2
templates (templates/web/), autoescaped, without script; every response carries a strict
Content-Security-Policy. No access log: a request's path is a secret.
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
from maild.ingress.api_support import api_errors
from maild.ingress.intake import Spooled
from maild.ingress.log_fields import describe
from maild.ingress.page_forms import Problem, csrf_token
from maild.ingress.web_account import add_routes as add_account_routes
from maild.ingress.web_actions import add_action_routes
from maild.ingress.web_api import add_api_routes
from maild.logs import get_logger
from maild.mail.tokens import load_secret
from maild.outbound.language import N_, SOURCE_LANGUAGE, customer_word, render_context
from maild.outbound.link_tokens import link_key
from maild.outbound.sender import flush
from maild.storage.db import reading, transaction
from maild.storage.models import utcnow
from maild.templates import DEFAULT_DIR
from maild.tickets.automation import after_changes
from maild.tickets.ticket_page import PageFile, TicketPage, attachment_file, ticket_page

log = get_logger("maild.web")
# (raw bytes, envelope recipient, ingress name, envelope sender) -> the spooled rows; raises if not taken.
TakeMail = Callable[[bytes, str, str, str], Awaitable[Spooled]]
# Adds a group of routes to the application (the ticket page's, its forms', other pages'): see ROUTES.
RouteAdder = Callable[["WebPages", web.Application], None]
WEB_DIR = DEFAULT_DIR / "web"
WEB_THREADS = 2
# An urlencoded form is small (a rating's comment); a form with files is read by page_forms.read_form,
# which bounds it itself (FormLimits), part by part.
CLIENT_MAX_SIZE = 1_000_000
SECURITY_HEADERS = {
    # No script at all; the one style sheet is ours; forms post only here; no frames, base or plugins.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the path: never pass it on
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # a page with a customer's mail stays out of shared caches
    "X-Robots-Tag": "noindex, nofollow",
}
# What a page says after a POST redirected to it (`?done=`): a fixed list, so a link cannot make it say
# anything else. The template translates them.
DONE_NOTICES = {
    "replied": N_("Your reply was sent. It will show here in a moment."),
    "closed": N_("The ticket is closed. Thank you!"),
    "closed_already": N_("The ticket was closed already."),
    "rated": N_("Thank you for your rating."),
}

_environment = Environment(
    loader=FileSystemLoader(str(WEB_DIR)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.i18n"],
)
# Page text is written {{ _("English") }} / {% trans %}: the desk's language comes with the render (issue 18).
_environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]


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
        # Mail a page queued (the agents' notice of a close) is sent here, never in a page's thread.
        self.sender = ThreadPoolExecutor(1, thread_name_prefix="web-send")
        self.sending: set[asyncio.Future[Any]] = set()
        prefix = urlsplit(cfg.web.public_url).path.rstrip("/")  # behind a proxy under a path
        self.prefix = prefix
        self.static_url = f"{prefix}/static/maild.css"
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=CLIENT_MAX_SIZE)
        for add_routes in ROUTES:
            add_routes(self, app)
        app.on_response_prepare.append(_security_headers)
        app.middlewares.append(self._error_pages)
        app.middlewares.append(api_errors)  # inside: the API's errors are JSON before pages see them
        return app

    def page_url(self, token: str) -> str:
        """The ticket page's path as the browser sees it (under public_url's path)."""
        return f"{self.prefix}/t/{token}"

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
        self.sender.shutdown(wait=True)  # what it has not sent stays queued: the outbox job sends it

    async def read(self, read: Any, *args: Any, **kwargs: Any) -> Any:
        """`read(session, *args, **kwargs)` in a reading transaction, in the pool."""

        def work() -> Any:
            with transaction(self.factory) as session:
                return read(session, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self.pool, work)

    async def write(self, change: Any, *args: Any, **kwargs: Any) -> Any:
        """`change(session, *args, **kwargs)` in one committed transaction, in the pool (a POST's change)."""

        def work() -> Any:
            with transaction(self.writer) as session:
                result = change(session, *args, **kwargs)
                # the rules and webhooks of what the page changed (a rating, a close), before the commit
                after_changes(session, self.cfg, utcnow())
                return result

        return await asyncio.get_running_loop().run_in_executor(self.pool, work)

    def send_soon(self, outbox_ids: list[int]) -> None:
        """Send these outbox rows now, in the background (as the pipeline sends the mail it queues); what
        fails stays queued for the outbox job."""
        if not outbox_ids:
            return
        future = asyncio.get_running_loop().run_in_executor(
            self.sender, flush, self.writer, self.cfg, outbox_ids
        )
        self.sending.add(future)
        future.add_done_callback(self._sent)

    def _sent(self, future: asyncio.Future[Any]) -> None:
        self.sending.discard(future)
        error = None if future.cancelled() else future.exception()
        if error is not None:
            log.warning("web_mail_not_sent", error=describe(error))

    async def page(self, request: web.Request) -> web.Response:
        # Read and render in the pool: a long ticket's page is milliseconds the loop need not spend.
        notice = DONE_NOTICES.get(request.query.get("done", ""))
        return await self.ticket_html(request.match_info["token"], notice=notice)

    async def ticket_html(
        self, token: str, *, status: int = 200, problem: Problem | None = None, **variables: Any
    ) -> web.Response:
        """The ticket page (404 when the token opens nothing), with a notice or a problem to show."""
        html: str | None = await self.read(self._page_html, token, problem, variables)
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def _page_html(
        self, session: Session, token: str, problem: Problem | None, variables: dict[str, Any]
    ) -> str | None:
        found: TicketPage | None = ticket_page(session, self.link_key, token)
        if found is None:
            return None
        return self._render(
            "ticket.html.j2",
            page=found,
            token=token,
            page_url=self.page_url(token),
            csrf={form: csrf_token(self.link_key, token, form) for form in ("reply", "close", "rate")},
            status=customer_word(found.status, found.language),
            priority=customer_word(found.priority, found.language),
            problem=problem,
            language=found.language,
            **variables,
        )

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        token, attachment_id = request.match_info["token"], int(request.match_info["attachment"])
        found: PageFile | None = await self.read(
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
    async def _error_pages(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """404, 403 and 413 as pages of ours (a plain message, the security headers), not aiohttp's text."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            return self.html("not_found.html.j2", status=404)
        except web.HTTPForbidden:
            return self.html("forbidden.html.j2", status=403)
        except web.HTTPRequestEntityTooLarge:
            return self.html("too_large.html.j2", status=413)

    def html(self, template: str, *, status: int = 200, **variables: Any) -> web.Response:
        return web.Response(
            text=self._render(template, **variables), status=status, content_type="text/html", charset="utf-8"
        )

    def _render(self, template: str, language: str = SOURCE_LANGUAGE, **variables: Any) -> str:
        """`language`: the desk's (maild.outbound.language): its gettext, words and dates override the
        environment's null translations."""
        context = {**render_context(language), "static_url": self.static_url, **variables}
        return _environment.get_template(template).render(context)


def _page_routes(pages: WebPages, app: web.Application) -> None:
    app.router.add_get("/t/{token}", pages.page)
    app.router.add_get(r"/t/{token}/a/{attachment:\d{1,18}}", pages.attachment)
    app.router.add_get("/static/maild.css", pages.style_sheet)


# Every page's routes; another page adds its own function here.
def _account_routes(pages: WebPages, app: web.Application) -> None:
    add_account_routes(app, pages, pages._render, customer_word)  # /my and /new/<desk>


ROUTES: list[RouteAdder] = [_page_routes, add_action_routes, _account_routes, add_api_routes]


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
