"""Opening a ticket from the web (issue 18 item 5), only on a desk with `web_new_tickets`:

    GET  /new/<desk>                        the form: name, address, subject, CCs, text, attachments
    POST /new/<desk>                        checked field by field (maild.tickets.web_new_ticket); made the
                                            mail the customer would have sent and spooled (ingress "web"):
                                            the pipeline makes the ticket and its auto-reply. With the
                                            desk's `web_confirm_address`: kept aside instead
                                            (maild.tickets.web_pending), and only a confirmation link is
                                            mailed to the address
    GET  /new/<desk>/confirm/<token>        a button (a GET changes nothing: mail scanners follow links)
    POST /new/<desk>/confirm/<token>        the kept mail spooled, once

Abuse: the body is read up to REQUEST_MAX_BYTES (413 beyond), rate limits per client address (every POST)
and per e-mail address (every accepted form) in memory, and a honeypot field that people never see:
filled in, the answer is the usual "thank you" and nothing is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.ingress.page_forms import FormLimits, read_form
from maild.ingress.web_forms import Pages, RateLimit, client_ip, utcnow
from maild.logs import get_logger
from maild.storage.models import Desk
from maild.tickets import web_pending
from maild.tickets.web_new_ticket import (
    REQUEST_MAX_BYTES,
    FieldError,
    Submission,
    Upload,
    build_mail,
    validate,
)

log = get_logger("maild.web")

NEW_PER_IP = (10, 3600.0)  # forms sent per client address per hour (valid or not)
NEW_PER_ADDRESS = (5, 3600.0)  # forms accepted per customer address per hour
HONEYPOT = "website"  # hidden from people by the style sheet; a form-filling robot fills it in
FIELDS = ("name", "address", "subject", "cc", "text", HONEYPOT, "csrf")


@dataclass(frozen=True)
class DeskForm:
    """What the form needs of its desk, read once per request."""

    name: str
    address: str  # the primary address: the mail's To and envelope recipient
    max_attachment_mb: int
    allowed_extensions: str
    confirm: bool
    # The desk's customers' language: every page about the desk is rendered with `language=` (a plain
    # variable until the pages speak the desk's language; then what the page is translated into).
    language: str


def desk_form(session: Session, name: str) -> DeskForm | None:
    desk = session.scalars(select(Desk).where(Desk.name == name)).first()
    if desk is None or not desk.web_new_tickets or not desk.addresses:
        return None
    return DeskForm(
        desk.name,
        desk.primary_address,
        desk.max_attachment_mb,
        desk.allowed_extensions,
        desk.web_confirm_address,
        desk.language,
    )


def _validate(
    session: Session, desk_name: str, fields: dict[str, str], uploads: list[Upload]
) -> tuple[Submission | None, list[FieldError]]:
    desk = session.scalars(select(Desk).where(Desk.name == desk_name)).one()
    return validate(session, desk, fields, uploads)


# The body as a whole is bounded here; the files' number and sizes are the form's to judge (each wrong
# one named on the page by maild.tickets.web_new_ticket), so page_forms' own file limits stay out of the way.
NEW_FORM_LIMITS = FormLimits(
    file_bytes=REQUEST_MAX_BYTES, total_bytes=REQUEST_MAX_BYTES, files=1000, body_bytes=REQUEST_MAX_BYTES
)


async def read_new_form(request: web.Request) -> tuple[dict[str, str], list[Upload]] | None:
    """The form's fields and files (page_forms.read_form), or None when the body is too large."""
    try:
        form = await read_form(request, NEW_FORM_LIMITS)
    except web.HTTPRequestEntityTooLarge:
        return None
    if form.problem is not None:
        return None
    return {name: form.get(name) for name in FIELDS if name in form.fields}, form.uploads


class NewTicket:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.per_ip = RateLimit(*NEW_PER_IP)
        self.per_address = RateLimit(*NEW_PER_ADDRESS)

    async def _desk(self, request: web.Request) -> DeskForm:
        found: DeskForm | None = await self.pages.read(desk_form, request.match_info["desk"])
        if found is None:
            raise web.HTTPNotFound()
        return found

    def _form(
        self, request: web.Request, desk: DeskForm, status: int = 200, **variables: Any
    ) -> web.Response:
        variables = {"values": {}, "errors": [], **variables}
        return self.pages.form_page(
            request, "new.html.j2", status, desk=desk, language=desk.language, honeypot=HONEYPOT, **variables
        )

    def _page(self, desk: DeskForm, template: str, status: int = 200, **variables: Any) -> web.Response:
        return self.pages.page(template, status, desk=desk, language=desk.language, **variables)

    async def form(self, request: web.Request) -> web.Response:
        return self._form(request, await self._desk(request))

    async def post(self, request: web.Request) -> web.Response:
        desk = await self._desk(request)
        read = await read_new_form(request)
        if read is None:
            return self._page(desk, "form_too_large.html.j2", 413)
        fields, uploads = read
        if not self.pages.csrf_ok(request, fields):
            return self.pages.refused(request, language=desk.language)
        if not self.per_ip.hit(client_ip(request)):
            return self.pages.too_many(language=desk.language)
        if fields.get(HONEYPOT, "").strip():
            return self._page(desk, "new_sent.html.j2")  # a robot: thanked, nothing kept
        submission, errors = await self.pages.read(_validate, desk.name, fields, uploads)
        if submission is None:
            return self._form(request, desk, 400, values=fields, errors=errors)
        if not self.per_address.hit(submission.address):
            return self.pages.too_many(language=desk.language)
        raw = build_mail(submission, desk.address, now=utcnow())
        if desk.confirm:
            return await self._keep_until_confirmed(desk, submission, raw)
        return await self._spool(desk, raw, submission.address)

    async def _spool(self, desk: DeskForm, raw: bytes, mail_from: str, recipient: str = "") -> web.Response:
        try:
            await self.pages.site.take_mail(raw, recipient or desk.address, "web", mail_from)
        except Exception as exc:  # not spooled: nothing was taken, the customer is asked to send again
            log.warning("web_new_ticket_not_spooled", desk=desk.name, error=f"{type(exc).__name__}: {exc}")
            return self._page(desk, "form_try_later.html.j2", 503)
        return self._page(desk, "new_sent.html.j2")

    async def _keep_until_confirmed(self, desk: DeskForm, submission: Submission, raw: bytes) -> web.Response:
        site = self.pages.site
        pending = web_pending.Pending(
            desk.name, desk.address, submission.address, submission.subject, utcnow(), raw
        )
        token = await self.pages.blocking(web_pending.store, site.cfg.data_dir, pending)
        if token is None:
            return self._page(desk, "form_try_later.html.j2", 503)
        try:
            queued = await self.pages.write(
                web_pending.queue_confirmation,
                site.cfg,
                desk.name,
                submission.name,
                submission.address,
                submission.subject,
                token,
                now=utcnow(),
            )
        except Exception as exc:  # no mail, so no way to confirm: the submission goes too
            log.warning("web_confirmation_not_queued", desk=desk.name, error=f"{type(exc).__name__}: {exc}")
            await self.pages.blocking(web_pending.discard, site.cfg.data_dir, token)
            return self._page(desk, "form_try_later.html.j2", 503)
        if queued is None:  # screened out (blocked, bouncing, its hour's mails): nobody can confirm it
            await self.pages.blocking(web_pending.discard, site.cfg.data_dir, token)
        self.pages.send_soon(queued)
        # The same page either way: the form does not tell whether an address is blocked.
        return self._page(desk, "new_confirm_sent.html.j2", hours=web_pending.PENDING_HOURS)

    async def _pending(self, request: web.Request, desk: DeskForm) -> web_pending.Pending | None:
        found: web_pending.Pending | None = await self.pages.blocking(
            lambda: web_pending.load(self.pages.site.cfg.data_dir, request.match_info["token"], now=utcnow())
        )
        return found if found is not None and found.desk == desk.name else None

    async def confirm_form(self, request: web.Request) -> web.Response:
        desk = await self._desk(request)
        pending = await self._pending(request, desk)
        if pending is None:
            return self._page(desk, "new_link_expired.html.j2", 410)
        return self.pages.form_page(
            request, "new_confirm.html.j2", desk=desk, language=desk.language, subject=pending.subject
        )

    async def confirm(self, request: web.Request) -> web.Response:
        desk = await self._desk(request)
        form = await request.post()
        if not self.pages.csrf_ok(request, form):
            return self.pages.refused(request, language=desk.language)
        data_dir, token = self.pages.site.cfg.data_dir, request.match_info["token"]
        if await self._pending(request, desk) is None:
            return self._page(desk, "new_link_expired.html.j2", 410)
        claimed = await self.pages.blocking(web_pending.claim, data_dir, token)
        if claimed is None:  # sent already, by a click a moment ago
            return self._page(desk, "new_sent.html.j2")
        pending = await self.pages.blocking(web_pending.read_claimed, claimed)
        response = await self._spool(desk, pending.raw, pending.mail_from, pending.recipient)
        if response.status == 200:
            await self.pages.blocking(web_pending.finish, claimed)
        else:
            await self.pages.blocking(web_pending.release, data_dir, token, claimed)
        return response
