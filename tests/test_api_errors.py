"""The JSON API's refusals (issue 19) against the real `maild serve`: each is JSON
{"error": {"status", "message"}} with its HTTP status, never a traceback nor the customers' HTML page:
400 malformed, 401 no or a bad token, 403 a read token on a change, 404 unknown ticket or route, 405,
409 a merged ticket, 413 a body too large, 422 values naming nothing known, 429 over the rate limit with
Retry-After. Also the served OpenAPI document is the committed one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from maild.ingress.api_support import api_errors
from tests.api_client import Answer, Api, api_config, new_token
from tests.cli import ctl, ok
from tests.daemon import Factory, Serve, start_fixture  # noqa: F401 (the fixture `start`)
from tests.test_api import two_tickets
from tests.web_browser import web_port_fixture  # noqa: F401 (the fixture web_port)

ROOT = Path(__file__).resolve().parent.parent
PER_MINUTE = 20


def test_every_refusal_is_json_with_its_status(
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    web_port: int,
    session_factory: Factory,
    start: Callable[[Path], Serve],
) -> None:
    config = api_config(tmp_path, data_dir, database_url, web_port, per_minute=PER_MINUTE)
    invoice, printer = two_tickets(session_factory, config)
    reader = Api(web_port, new_token(config, "reader", "read"))
    writer = Api(web_port, new_token(config, "writer", "write"))
    gone = new_token(config, "gone", "write")
    ok(ctl(config, "api-token", "remove", "gone"))
    anonymous = Api(web_port)
    start(config)
    ticket = f"/api/v1/tickets/{printer}"
    _unauthorized_forbidden_unknown(anonymous, reader, writer, gone, ticket)
    _malformed_and_invalid(reader, writer, ticket)
    # 409: a ticket merged into another.
    ok(ctl(config, "ticket", "merge", printer, invoice))
    message = _refused(writer.post(f"/api/v1/tickets/{invoice}/status", {"status": "closed"}), 409)
    assert message == f"{invoice} is merged into {printer}: act on {printer}"
    # None of it changed anything.
    log = json.loads(ok(ctl(config, "ticket", "log", printer, "--json")))
    assert not [e for e in log if e["actor"].startswith("api:")]

    # The document served is the one committed.
    served = anonymous.get("/api/v1/openapi.json")
    assert served.status == 200
    assert served.body == json.loads((ROOT / "docs" / "openapi.json").read_text())

    # 429 once the token's PER_MINUTE requests are spent, with Retry-After; other tokens go on.
    burst = Api(web_port, new_token(config, "burst", "read"))
    statuses = [burst.get("/api/v1/tickets?limit=1").status for _ in range(PER_MINUTE)]
    assert statuses == [200] * PER_MINUTE
    limited = next(a for a in (burst.get("/api/v1/tickets") for _ in range(10)) if a.status != 200)
    assert "requests a minute" in _refused(limited, 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60 // PER_MINUTE + 1
    assert reader.get(f"/api/v1/tickets/{printer}").status == 200


def _unauthorized_forbidden_unknown(anonymous: Api, reader: Api, writer: Api, gone: str, ticket: str) -> None:
    # 401: no token, another scheme, a token that is none, a revoked one.
    for answer in (
        anonymous.get("/api/v1/tickets"),
        anonymous.get("/api/v1/tickets", headers={"Authorization": "Basic cm9vdDpyb290"}),
        anonymous.get("/api/v1/tickets", token="maild_" + "x" * 43),
        anonymous.post(f"{ticket}/status", {"status": "closed"}, token=gone),
    ):
        assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer"), answer
        assert "token" in answer.error
    # 403: a read token on a change.
    answer = reader.post(f"{ticket}/status", {"status": "closed"})
    assert answer.status == 403 and "may only read" in answer.error
    # 404: an unknown ticket, route, or tag on the ticket; 405 a method the route has not.
    assert "no ticket 'SUP-99'" in _refused(reader.get("/api/v1/tickets/SUP-99"), 404)
    assert "no ticket" in _refused(writer.post("/api/v1/tickets/SUP-99/notes", {"text": "x"}), 404)
    assert "no such endpoint" in _refused(anonymous.get("/api/v1/ticket"), 404)
    assert "no such endpoint" in _refused(reader.get(f"{ticket}/nothing"), 404)
    assert "is not tagged 'never'" in _refused(writer.call("DELETE", f"{ticket}/tags/never"), 404)
    answer = anonymous.call("PUT", "/api/v1/tickets", {})
    assert answer.status == 405 and "GET" in answer.headers["Allow"] and answer.error


def _malformed_and_invalid(reader: Api, writer: Api, ticket: str) -> None:
    # 400: not JSON, not an object, a field missing, one unknown, of the wrong type; bad query parameters.
    assert "not JSON" in _refused(writer.post(f"{ticket}/status", raw=b"{status: closed"), 400)
    assert "JSON object" in _refused(writer.post(f"{ticket}/status", ["closed"]), 400)
    assert "missing field 'status'" in _refused(writer.post(f"{ticket}/status", {}), 400)
    assert "unknown field 'state'" in _refused(
        writer.post(f"{ticket}/status", {"status": "x", "state": 1}), 400
    )
    assert "must be a string" in _refused(writer.post(f"{ticket}/priority", {"priority": 3}), 400)
    assert "unknown parameter 'state'" in _refused(reader.get("/api/v1/tickets?state=open"), 400)
    assert "invalid older_than" in _refused(reader.get("/api/v1/tickets?older_than=soon"), 400)
    assert "limit" in _refused(reader.get("/api/v1/tickets?limit=0"), 400)
    # 422: well-formed values that name nothing known.
    assert "unknown status 'pending' for desk support" in _refused(
        writer.post(f"{ticket}/status", {"status": "pending"}), 422
    )
    assert "unknown priority 'huge'" in _refused(writer.post(f"{ticket}/priority", {"priority": "huge"}), 422)
    assert "no agent 'zed'" in _refused(writer.post(f"{ticket}/assign", {"agent": "zed"}), 422)
    assert "is not a tag" in _refused(writer.post(f"{ticket}/tags", {"tag": "two words"}), 422)
    assert "empty" in _refused(writer.post(f"{ticket}/reply", {"text": " \n "}), 422)
    assert "unknown status 'pending'" in _refused(reader.get("/api/v1/tickets?status=pending"), 422)
    assert "no desk named 'sales'" in _refused(reader.get("/api/v1/tickets?desk=sales"), 422)
    # 413: a body over the limit, refused before it is read.
    assert "over" in _refused(writer.post(f"{ticket}/notes", {"text": "x" * 1_100_000}), 413)


def _refused(answer: Answer, status: int) -> str:
    assert answer.status == status, (answer.status, answer.body)
    return answer.error


def test_faults_are_json_too() -> None:
    """What no request can provoke on purpose, through the same middleware on a loopback listener: a
    ticket changed meanwhile (PostgreSQL: deleted or merged by another writer) 409, a busy database 503
    with Retry-After, a bug 500 without its traceback; pages outside /api/v1 keep their own errors."""

    async def run() -> list[tuple[int, str, str]]:
        async def changed(_request: web.Request) -> web.StreamResponse:
            raise StaleDataError(
                "UPDATE statement on table 'tickets' expected to update 1 row(s); 0 were matched"
            )

        async def busy(_request: web.Request) -> web.StreamResponse:
            raise OperationalError("UPDATE tickets", {}, Exception("database is locked"))

        async def bug(_request: web.Request) -> web.StreamResponse:
            raise KeyError("secret internals")

        app = web.Application(middlewares=[api_errors])
        for path, handler in (("changed", changed), ("busy", busy), ("bug", bug)):
            app.router.add_get(f"/api/v1/{path}", handler)
        app.router.add_get("/page", bug)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as client:
                answers = []
                for path in ("/api/v1/changed", "/api/v1/busy", "/api/v1/bug", "/page"):
                    async with client.get(f"http://127.0.0.1:{port}{path}") as response:
                        answers.append(
                            (response.status, response.headers.get("Retry-After", ""), await response.text())
                        )
                return answers
        finally:
            await runner.cleanup()

    changed, busy, bug, page = asyncio.run(run())
    assert changed[0] == 409 and "changed meanwhile" in json.loads(changed[2])["error"]["message"]
    assert busy[:2] == (503, "5") and json.loads(busy[2])["error"]["status"] == 503
    assert bug[0] == 500 and "secret" not in bug[2] and "Traceback" not in bug[2]
    assert json.loads(bug[2])["error"]["message"].startswith("maild failed")
    assert page[0] == 500 and not page[2].startswith("{")  # not the API's: aiohttp's own page
