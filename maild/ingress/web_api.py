"""The JSON API (issue 19) on the `[web]` listener, under /api/v1, with `Authorization: Bearer <token>`
(`maildctl api-token add NAME --scope read|write`). Its JSON is maildctl's: a ticket as `ticket list
--json` / `ticket show --json` / `ticket log --json` shows it (maild.tickets.ticket_views), a change as a
row of `ticket bulk --json`. The document is docs/openapi.json, served at /api/v1/openapi.json
(maild.ingress.api_spec).

    GET    /api/v1/tickets                       the filters of `ticket list` as query parameters, limit
    GET    /api/v1/tickets/{number}              `ticket show --json`
    GET    /api/v1/tickets/{number}/log          `ticket log --json`
    POST   /api/v1/tickets/{number}/reply        {"text", "as"?}          (write scope, and below)
    POST   /api/v1/tickets/{number}/notes        {"text"}
    POST   /api/v1/tickets/{number}/status       {"status"}
    POST   /api/v1/tickets/{number}/priority     {"priority"}
    POST   /api/v1/tickets/{number}/assign       {"agent": address, name or null}
    POST   /api/v1/tickets/{number}/tags         {"tag"}
    DELETE /api/v1/tickets/{number}/tags/{tag}

The reads and the token check run in the web pool's reading transactions; each change in one
transaction of its own (maild.ingress.api_changes). Errors: maild.ingress.api_support."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy.orm import Session

from maild.config import Config
from maild.ingress import api_changes
from maild.ingress.api_changes import Change, Done, ReplyText
from maild.ingress.api_spec import openapi_document
from maild.ingress.api_support import (
    API_PREFIX,
    ApiError,
    RateLimit,
    fields,
    json_object,
    nonempty,
    string_list,
    text,
)
from maild.tickets import api_tokens, ticket_ops
from maild.tickets.api_tokens import Caller
from maild.tickets.ticket_query import TicketFilters, as_parameter, list_tickets
from maild.tickets.ticket_views import show_json, ticket_log

MAX_LIMIT = 10_000
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="maild"'}


class Pages(Protocol):
    """What the API needs of maild.ingress.web.WebPages (not imported: it imports this module)."""

    cfg: Config

    async def read(self, read: Any, *args: Any) -> Any: ...
    async def write(self, change: Any, *args: Any) -> Any: ...
    def send_soon(self, outbox_ids: list[int]) -> None: ...


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the OpenAPI document
    handler: str  # the Api method
    scope: str | None  # the token's scope it needs (None: no token)


ROUTES = (
    Route("GET", f"{API_PREFIX}/openapi.json", "openapi", None),
    Route("GET", f"{API_PREFIX}/tickets", "list_tickets", "read"),
    Route("POST", f"{API_PREFIX}/tickets", "open_ticket", "write"),
    Route("GET", f"{API_PREFIX}/tickets/{{number}}", "show_ticket", "read"),
    Route("GET", f"{API_PREFIX}/tickets/{{number}}/log", "ticket_log", "read"),
    Route("POST", f"{API_PREFIX}/tickets/{{number}}/reply", "reply", "write"),
    Route("POST", f"{API_PREFIX}/tickets/{{number}}/notes", "note", "write"),
    Route("POST", f"{API_PREFIX}/tickets/{{number}}/status", "set_status", "write"),
    Route("POST", f"{API_PREFIX}/tickets/{{number}}/priority", "set_priority", "write"),
    Route("POST", f"{API_PREFIX}/tickets/{{number}}/assign", "assign", "write"),
    Route("POST", f"{API_PREFIX}/tickets/{{number}}/tags", "add_tag", "write"),
    Route("DELETE", f"{API_PREFIX}/tickets/{{number}}/tags/{{tag}}", "remove_tag", "write"),
)


def add_api_routes(pages: Pages, app: web.Application) -> None:
    api = Api(pages)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, api.guarded(route))
    # Anything else under the prefix is aiohttp's 404 or 405, made JSON by api_support.api_errors.


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "missing 'Authorization: Bearer <token>' (maildctl api-token add)", UNAUTHORIZED_HEADERS
        )
    return token.strip()


class Api:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.rate = RateLimit(pages.cfg.web.api_requests_per_minute)

    def guarded(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The route's handler behind its token check, rate limit and scope."""
        handler: Callable[[web.Request, Caller | None], Awaitable[web.StreamResponse]] = getattr(
            self, route.handler
        )

        async def checked(request: web.Request) -> web.StreamResponse:
            caller = await self.caller(request, route.scope) if route.scope is not None else None
            return await handler(request, caller)

        return checked

    async def caller(self, request: web.Request, scope: str) -> Caller:
        """401 without a valid token, 429 over its rate, 403 for a read token on a write."""
        now = _now()
        caller: Caller | None = await self.pages.read(api_tokens.caller_of, bearer_token(request))
        if caller is None:
            raise ApiError(401, "unknown or revoked token", UNAUTHORIZED_HEADERS)
        wait = self.rate.take(caller.name)
        if wait is not None:
            per_minute = self.pages.cfg.web.api_requests_per_minute
            raise ApiError(
                429, f"over {per_minute} requests a minute: try again in {wait} s", {"Retry-After": str(wait)}
            )
        if scope == "write" and not caller.may_write:
            raise ApiError(403, f"token {caller.name} may only read: a change needs a write token")
        if api_tokens.due_for_last_used(caller, now):
            await self.pages.write(api_tokens.mark_used, caller.token_id, now)
        return caller

    async def openapi(self, _request: web.Request, _caller: Caller | None) -> web.StreamResponse:
        return web.json_response(openapi_document())

    # --- reads ---------------------------------------------------------------------------------------

    async def list_tickets(self, request: web.Request, _caller: Caller | None) -> web.StreamResponse:
        given, limit = _list_parameters(request)
        rows = await self.pages.read(_list, given, _now(), limit)
        return web.json_response(rows)

    async def show_ticket(self, request: web.Request, _caller: Caller | None) -> web.StreamResponse:
        return web.json_response(await self.pages.read(_show, request.match_info["number"]))

    async def ticket_log(self, request: web.Request, _caller: Caller | None) -> web.StreamResponse:
        return web.json_response(await self.pages.read(_log, request.match_info["number"]))

    # --- changes -------------------------------------------------------------------------------------

    async def _change(
        self, request: web.Request, caller: Caller | None, change: Change, value: Any
    ) -> web.StreamResponse:
        if caller is None:  # a write route always has one (Route.scope): never here
            raise ApiError(401, "missing 'Authorization: Bearer <token>'", UNAUTHORIZED_HEADERS)
        done: Done = await self.pages.write(
            api_changes.run_change,
            self.pages.cfg,
            change,
            request.match_info["number"],
            value,
            caller.actor,
            _now(),
        )
        self.pages.send_soon(done.outbox_ids)
        return web.json_response(done.answer)

    async def open_ticket(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        if caller is None:  # a write route always has one (Route.scope): never here
            raise ApiError(401, "missing 'Authorization: Bearer <token>'", UNAUTHORIZED_HEADERS)
        body = await json_object(request)
        fields(body, ("desk", "to", "subject", "text"), ("cc", "as"))
        given = api_changes.NewTicket(
            desk=text(body, "desk") or "",
            to=text(body, "to") or "",
            cc=string_list(body, "cc"),
            subject=text(body, "subject") or "",
            text=nonempty(text(body, "text") or "", "text"),
            as_agent=text(body, "as", nullable=True),
        )
        now = _now()
        opened = partial(api_changes.open_new, cfg=self.pages.cfg, given=given, actor=caller.actor, now=now)
        done: Done = await self.pages.write(api_changes.run_write, self.pages.cfg, opened, now)
        self.pages.send_soon(done.outbox_ids)
        return web.json_response(done.answer, status=201)

    async def _one_field(self, request: web.Request, name: str) -> str:
        body = await json_object(request)
        fields(body, (name,))
        return text(body, name) or ""

    async def set_status(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        return await self._change(
            request, caller, api_changes.set_status, await self._one_field(request, "status")
        )

    async def set_priority(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        wanted = await self._one_field(request, "priority")
        return await self._change(request, caller, api_changes.set_priority, wanted)

    async def add_tag(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        return await self._change(request, caller, api_changes.add_tag, await self._one_field(request, "tag"))

    async def remove_tag(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        return await self._change(request, caller, api_changes.remove_tag, request.match_info["tag"])

    async def assign(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        body = await json_object(request)
        fields(body, ("agent",))
        return await self._change(request, caller, api_changes.assign, text(body, "agent", nullable=True))

    async def note(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        written = nonempty(await self._one_field(request, "text"), "text")
        return await self._change(request, caller, api_changes.add_note, written)

    async def reply(self, request: web.Request, caller: Caller | None) -> web.StreamResponse:
        body = await json_object(request)
        fields(body, ("text",), ("as",))
        given = ReplyText(nonempty(text(body, "text") or "", "text"), text(body, "as", nullable=True))
        return await self._change(request, caller, api_changes.reply, given)


def _list_parameters(request: web.Request) -> tuple[TicketFilters, int | None]:
    """The query's filters (those of `ticket list`, spelled older_than, flagged_for) and limit."""
    names = (*TicketFilters.names(), "limit")
    for key in request.query:
        if key not in names:
            raise ApiError(400, f"unknown parameter {key!r}: use {', '.join(names)}")
        if len(request.query.getall(key)) > 1:
            raise ApiError(400, f"parameter {key!r} given more than once")
    given = TicketFilters(**{name: request.query.get(name) for name in TicketFilters.names()})
    limit_text = request.query.get("limit")
    if limit_text is None:
        return given, None
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit_text!r}")
    return given, int(limit_text)


def _list(
    session: Session, given: TicketFilters, now: dt.datetime, limit: int | None
) -> list[dict[str, Any]]:
    return list_tickets(session, given, now, spell=as_parameter, limit=limit)


def _found(session: Session, number: str) -> Any:
    ticket = ticket_ops.ticket_by_number(session, number)
    if ticket is None:
        raise ApiError(404, f"no ticket {number!r}")
    return ticket


def _show(session: Session, number: str) -> dict[str, Any]:
    """A merged number shows its survivor (with `merged_from`), as `ticket show` does."""
    return show_json(session, _found(session, number))


def _log(session: Session, number: str) -> list[dict[str, Any]]:
    return ticket_log(session, _found(session, number))[1]
