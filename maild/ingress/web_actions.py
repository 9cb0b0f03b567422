"""What a customer does on their ticket page (issue 18): reply, close, rate an agent's reply.

    POST /t/<token>/reply               text and files (multipart): a mail from them into the spool
    POST /t/<token>/close               the ticket closed, by them
    GET  /t/<token>/rate/<message>      the rating form for one agent reply (?score=N preselects)
    POST /t/<token>/rate/<message>      the rating stored (or changed)

Each POST must carry its form's CSRF token and must not come from another site (page_forms); then it is
checked and either answered with the page and a clear message (nothing stored) or done and redirected
(303) to the page with a notice. A GET here only shows a form: the rating links in the agent_reply mail
lead to it, and mail scanners follow links.

A reply is not stored here: maild.tickets.web_reply makes it the mail the contact would have sent, and the
intake spools it (fsynced, committed) and hands it to the pipeline, which threads, stores, audits and
announces it as that mail. Closing and rating change the ticket in one transaction (maild.tickets.
customer_close, maild.tickets.ratings), audited with the contact as the actor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.config import Config
from maild.ingress.log_fields import describe
from maild.ingress.page_forms import (
    CSRF_FIELD,
    N_,
    FormLimits,
    PostedForm,
    Problem,
    Upload,
    cross_site,
    csrf_ok,
    csrf_token,
    read_form,
)
from maild.logs import get_logger
from maild.mail.attachment_policy import MB
from maild.storage.db import is_transient
from maild.tickets.customer_close import Closed, close_by_customer
from maild.tickets.ratings import SCORES, rate, rateable_reply
from maild.tickets.ticket_links import open_link
from maild.tickets.ticket_page import ticket_page
from maild.tickets.web_reply import TEXT_MAX, WEB_INGRESS, WebReply, build_reply, can_reply, refused_file

log = get_logger("maild.web")
REPLY_TOTAL_MB = 30  # all files of one reply together (each: the desk's max_attachment_mb)
SMALL_FORM = FormLimits(file_bytes=0, total_bytes=0, files=0)  # close, rate: no files
TRY_LATER = Problem(N_("This could not be done just now. Please try again in a minute."))
MESSAGE = r"{message:\d{1,18}}"


class Pages(Protocol):
    """What the forms need of maild.ingress.web.WebPages (not imported: it imports this module)."""

    cfg: Config
    link_key: bytes
    take_mail: Callable[[bytes, str, str, str], Awaitable[Any]]

    async def read(self, read: Any, *args: Any) -> Any: ...
    async def write(self, change: Any, *args: Any) -> Any: ...
    def page_url(self, token: str) -> str: ...
    def send_soon(self, outbox_ids: list[int]) -> None: ...
    async def ticket_html(
        self, token: str, *, status: int = 200, problem: Problem | None = None, **variables: Any
    ) -> web.Response: ...
    def html(self, template: str, *, status: int = 200, **variables: Any) -> web.Response: ...


def add_action_routes(pages: Pages, app: web.Application) -> None:
    actions = WebActions(pages)
    app.router.add_post("/t/{token}/reply", actions.reply)
    app.router.add_post("/t/{token}/close", actions.close)
    app.router.add_get(f"/t/{{token}}/rate/{MESSAGE}", actions.rate_page)
    app.router.add_post(f"/t/{{token}}/rate/{MESSAGE}", actions.rate)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class _RateForm:
    score: int | None
    comment: str


class WebActions:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.key = pages.link_key

    async def _form(self, request: web.Request, form_name: str, limits: FormLimits) -> PostedForm:
        """The posted form once it is known to come from our page: else 403 (nothing read is used)."""
        token = request.match_info["token"]
        if cross_site(request, self.pages.cfg.web.public_url):
            raise web.HTTPForbidden()
        form = await read_form(request, limits)
        if not csrf_ok(self.key, token, form_name, form.fields.get(CSRF_FIELD)):
            raise web.HTTPForbidden()
        return form

    def _done(self, token: str, notice: str, anchor: str = "") -> web.HTTPSeeOther:
        return web.HTTPSeeOther(f"{self.pages.page_url(token)}?done={notice}{anchor}")

    # --- reply -------------------------------------------------------------------------------------

    async def reply(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        if cross_site(request, self.pages.cfg.web.public_url):
            raise web.HTTPForbidden()  # before reading megabytes of a forged upload
        limits: FormLimits | None = await self.pages.read(self._reply_limits, token)
        if limits is None:
            raise web.HTTPNotFound()
        form = await self._form(request, "reply", limits)
        text = form.get("text")
        if form.problem is not None:
            return await self.pages.ticket_html(token, status=400, problem=form.problem, reply_text=text)
        made: WebReply | Problem | None = await self.pages.read(self._make_reply, token, text, form.uploads)
        if made is None:
            raise web.HTTPNotFound()
        if isinstance(made, Problem):
            return await self.pages.ticket_html(token, status=400, problem=made, reply_text=text)
        try:
            await self.pages.take_mail(made.raw, made.recipient, WEB_INGRESS, made.mail_from)
        except Exception as exc:  # not taken: nothing stored; the customer still has their text
            log.warning("web_reply_not_taken", error=describe(exc))
            return await self.pages.ticket_html(token, status=503, problem=TRY_LATER, reply_text=text)
        raise self._done(token, "replied")

    def _reply_limits(self, session: Session, token: str) -> FormLimits | None:
        opened = open_link(session, self.key, token)
        if opened is None:
            return None
        per_file = opened.ticket.desk.max_attachment_mb * MB
        total = max(REPLY_TOTAL_MB * MB, per_file)
        # A file over the desk's limit is still read to its end (then dropped): so the browser gets the
        # page saying why instead of a connection cut mid-upload. Beyond this, the connection is cut.
        return FormLimits(file_bytes=per_file, total_bytes=total, body_bytes=2 * total + MB)

    def _make_reply(
        self, session: Session, token: str, text: str, uploads: list[Upload]
    ) -> WebReply | Problem | None:
        opened = open_link(session, self.key, token)
        if opened is None:
            return None
        ticket = opened.ticket
        if not can_reply(ticket):
            return Problem(N_("This ticket is closed: it takes no more replies. Write us a new mail."))
        if not text.strip():
            return Problem(N_("Please write your reply before sending it."))
        if len(text) > TEXT_MAX:
            return Problem(N_("The text is too long."))
        refused = refused_file(ticket.desk, uploads)
        if refused is not None:
            return Problem(refused.text, refused.args)
        return build_reply(self.pages.cfg.data_dir, ticket, opened.contact, text, uploads, now=_now())

    # --- close -------------------------------------------------------------------------------------

    async def close(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        form = await self._form(request, "close", SMALL_FORM)
        if form.problem is not None:
            return await self.pages.ticket_html(token, status=400, problem=form.problem)
        try:
            closed: Closed | None = await self.pages.write(self._close, token)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return await self.pages.ticket_html(token, status=503, problem=TRY_LATER)
        if closed is None:
            raise web.HTTPNotFound()
        self.pages.send_soon(closed.outbox_ids)  # the agents hear of it now, not at the next outbox run
        raise self._done(token, "closed" if closed.done else "closed_already")

    def _close(self, session: Session, token: str) -> Closed | None:
        opened = open_link(session, self.key, token)
        if opened is None:
            return None
        return close_by_customer(session, self.pages.cfg, opened.ticket, opened.contact, now=_now())

    # --- rate --------------------------------------------------------------------------------------

    async def rate_page(self, request: web.Request) -> web.StreamResponse:
        token, message_id = request.match_info["token"], int(request.match_info["message"])
        asked = _score(request.query.get("score", ""))
        return await self._rate_response(token, message_id, _RateForm(asked, ""), preset=True)

    async def rate(self, request: web.Request) -> web.StreamResponse:
        token, message_id = request.match_info["token"], int(request.match_info["message"])
        form = await self._form(request, "rate", SMALL_FORM)
        given = _RateForm(_score(form.get("score")), form.get("comment"))
        if form.problem is not None or given.score is None:
            problem = form.problem or Problem(N_("Please choose a rating from 1 to 5."))
            return await self._rate_response(token, message_id, given, status=400, problem=problem)
        try:
            try:
                rated: bool = await self.pages.write(self._rate, token, message_id, given)
            except IntegrityError:  # the same rating posted twice at once: the second changes the first
                rated = await self.pages.write(self._rate, token, message_id, given)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return await self._rate_response(token, message_id, given, status=503, problem=TRY_LATER)
        if not rated:
            raise web.HTTPNotFound()
        raise self._done(token, "rated", f"#m{message_id}")

    def _rate(self, session: Session, token: str, message_id: int, given: _RateForm) -> bool:
        opened = open_link(session, self.key, token)
        reply = rateable_reply(session, opened.ticket, message_id) if opened is not None else None
        if opened is None or reply is None or given.score is None:
            return False
        rate(session, opened.ticket, opened.contact, reply, given.score, given.comment, now=_now())
        return True

    async def _rate_response(
        self,
        token: str,
        message_id: int,
        given: _RateForm,
        *,
        preset: bool = False,
        status: int = 200,
        problem: Problem | None = None,
    ) -> web.Response:
        variables = await self.pages.read(self._rate_variables, token, message_id, given, preset)
        if variables is None:
            raise web.HTTPNotFound()
        return self.pages.html("rate.html.j2", status=status, problem=problem, **variables)

    def _rate_variables(
        self, session: Session, token: str, message_id: int, given: _RateForm, preset: bool
    ) -> dict[str, Any] | None:
        """The rating page's variables: the reply as the ticket page shows it, the score to preselect
        (the link's, else the one given before) and the comment. None: no such reply, or no ratings."""
        page = ticket_page(session, self.key, token)
        if page is None or not page.ratings_on:
            return None
        reply = next((m for m in page.messages if m.id == message_id and m.from_desk), None)
        if reply is None:
            return None
        before = reply.rating
        comment = before.comment if preset and before is not None else given.comment
        score = given.score or (before.score if before is not None else None)
        return {
            "page": page,
            "reply": reply,
            "score": score,
            "comment": comment,
            "scores": SCORES,
            "page_url": self.pages.page_url(token),
            "csrf": csrf_token(self.key, token, "rate"),
            "language": page.language,
        }


def _score(value: str) -> int | None:
    value = value.strip()
    return int(value) if value in {str(score) for score in SCORES} else None
