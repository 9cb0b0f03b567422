""" "My tickets" on the customers' pages (issue 18 item 4); `add_routes` also registers the new-ticket form
(maild.ingress.web_new).

    GET  /my            a form: the customer's address
    POST /my            the sign-in mail to that address, if it is a contact with tickets; the same page
                        whatever the address, so the form tells nobody whether an address is known
    GET  /my/<token>    their tickets (number, subject, status, last activity), each with its own link;
                        a tampered token 404, an expired one 410. Only reads.

The sign-in mail is queued in the background after the answer, so a known address does not answer
slower than an unknown one. Rate limits (in memory): per client address and per e-mail address.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from maild.ingress.web_forms import Pages, RateLimit, Render, Site, client_ip, utcnow
from maild.ingress.web_new import NewTicket
from maild.mail.addresses import is_valid, normalize
from maild.outbound.language import N_, SOURCE_LANGUAGE
from maild.tickets.sign_in import SIGN_IN_MINUTES, check_token, my_tickets, request_sign_in, sign_in_key

MY_PER_IP = (20, 3600.0)  # sign-in requests per client address per hour
MY_PER_ADDRESS = (3, 900.0)  # per e-mail address per 15 minutes: nobody's mailbox is flooded from here


class MyTickets:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.key = sign_in_key(pages.site.link_key)
        self.per_ip = RateLimit(*MY_PER_IP)
        self.per_address = RateLimit(*MY_PER_ADDRESS)

    async def form(self, request: web.Request) -> web.Response:
        return self.pages.form_page(request, "my.html.j2", address="", error="")

    async def post(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self.pages.csrf_ok(request, form):
            return self.pages.refused(request)
        address = normalize(str(form.get("address", "")))
        if not is_valid(address) or len(address) > 254:
            error = (
                N_("%(address)s is not a valid e-mail address.")
                if address
                else N_("Please give your e-mail address.")
            )
            return self.pages.form_page(request, "my.html.j2", 400, address=address, error=error)
        if not self.per_ip.hit(client_ip(request)) or not self.per_address.hit(address):
            return self.pages.too_many()
        # After the answer: the time it takes must not tell whether the address is known.
        self.pages.in_background(self._sign_in(address))
        return self.pages.page("my_sent.html.j2", minutes=SIGN_IN_MINUTES)

    async def _sign_in(self, address: str) -> None:
        site = self.pages.site
        queued = await self.pages.write(request_sign_in, site.cfg, site.link_key, address, now=utcnow())
        self.pages.send_soon(queued)

    async def listing(self, request: web.Request) -> web.Response:
        state, contact_id = check_token(self.key, request.match_info["token"], now=utcnow())
        if state == "invalid":
            return self.pages.page("my_not_found.html.j2", 404)
        if state == "expired":
            return self.pages.page("my_link_expired.html.j2", 410, minutes=SIGN_IN_MINUTES)
        site = self.pages.site
        found = await self.pages.read(my_tickets, site.cfg, site.link_key, contact_id)
        if found is None:  # the contact is gone or blocked
            return self.pages.page("my_not_found.html.j2", 404)
        contact, listed = found
        # In the language of their latest ticket's desk (each ticket's status in its own desk's words).
        language = listed[0].language if listed else SOURCE_LANGUAGE
        return self.pages.page(
            "my_tickets.html.j2", contact=contact, tickets=listed, words=self.pages.words, language=language
        )


def add_routes(app: web.Application, site: Site, render: Render, words: Callable[[str, str], str]) -> None:
    """/my and /new/<desk> on `app`. `render`: a page template to HTML; `words`: a status as customers
    read it."""
    pages = Pages(site, render, words)
    mine = MyTickets(pages)
    app.router.add_get("/my", mine.form)
    app.router.add_post("/my", mine.post)
    app.router.add_get("/my/{token}", mine.listing)
    new = NewTicket(pages)
    app.router.add_get("/new/{desk}", new.form)
    app.router.add_post("/new/{desk}", new.post)
    app.router.add_get("/new/{desk}/confirm/{token}", new.confirm_form)
    app.router.add_post("/new/{desk}/confirm/{token}", new.confirm)
