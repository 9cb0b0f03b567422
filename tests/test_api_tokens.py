"""The JSON API's tokens and document (issue 19), without a daemon: `maildctl api-token add|list|remove`
and their one-line errors, only a sha256 stored, each audited; the OpenAPI document committed as
docs/openapi.json is the one maild builds, and names every route of the application and no other; the
rate limit refills as it says. (The API over HTTP: tests/test_api.py, test_api_errors.py.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from maild.config import Config
from maild.ingress.api_spec import document_text, openapi_document
from maild.ingress.api_support import API_PREFIX, RateLimit
from maild.ingress.web import WebPages
from maild.ingress.web_api import ROUTES
from maild.storage.models import ApiToken, AuditLog
from tests.cli import ctl, ok, one_line_error
from tests.daemon import Factory

ROOT = Path(__file__).resolve().parent.parent


def test_tokens_are_made_listed_and_revoked(config_file: Path, session_factory: Factory) -> None:
    token = ok(ctl(config_file, "api-token", "add", "dashboard", "--scope", "read")).strip()
    assert token.startswith("maild_") and len(token) == len("maild_") + 43
    ok(ctl(config_file, "api-token", "add", "robot", "--scope", "write"))
    with session_factory() as s:
        rows = {row.name: row for row in s.scalars(select(ApiToken))}
        assert rows["dashboard"].token_sha256 == hashlib.sha256(token.encode()).hexdigest()
        assert token not in json.dumps([vars(r).get("token_sha256") for r in rows.values()])
    listed = json.loads(ok(ctl(config_file, "api-token", "list", "--json")))
    assert [(t["name"], t["scope"], t["last_used_at"], t["revoked"]) for t in listed] == [
        ("dashboard", "read", None, False),
        ("robot", "write", None, False),
    ]
    assert set(listed[0]) == {
        "name",
        "scope",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked",
        "revoked_at",
    }
    table = ok(ctl(config_file, "api-token", "list"))
    assert table.splitlines()[0].split() == ["NAME", "SCOPE", "CREATED", "LAST", "USED", "REVOKED"]
    assert "never" in table and token not in table

    assert ok(ctl(config_file, "api-token", "remove", "robot")).strip() == "token robot revoked"
    assert "revoked already" in ok(ctl(config_file, "api-token", "remove", "robot"))
    assert json.loads(ok(ctl(config_file, "api-token", "list", "--json")))[1]["revoked"] is True
    with session_factory() as s:
        audited = [(a.action, a.detail) for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert audited == [
        ("api_token_add", {"name": "dashboard", "scope": "read"}),
        ("api_token_add", {"name": "robot", "scope": "write"}),
        ("api_token_remove", {"name": "robot", "scope": "write"}),
    ]


def test_token_commands_refuse_in_one_line(config_file: Path) -> None:
    ok(ctl(config_file, "api-token", "add", "robot", "--scope", "write"))
    assert "a token named 'robot' exists" in one_line_error(
        ctl(config_file, "api-token", "add", "robot", "--scope", "read")
    )
    assert "is not a token name" in one_line_error(
        ctl(config_file, "api-token", "add", "two words", "--scope", "read")
    )
    assert "no token named 'nobody'" in one_line_error(ctl(config_file, "api-token", "remove", "nobody"))
    ok(ctl(config_file, "api-token", "remove", "robot"))
    assert "revoked: its name stays taken" in one_line_error(
        ctl(config_file, "api-token", "add", "robot", "--scope", "write")
    )
    wrong = ctl(config_file, "api-token", "add", "x", "--scope", "admin")
    assert (
        wrong.returncode == 2
        and "invalid choice: 'admin'" in wrong.stderr
        and len(wrong.stderr.splitlines()) == 1
    )


def test_the_committed_document_names_every_route_and_only_those(
    cfg: Config, session_factory: Factory
) -> None:
    assert (ROOT / "docs" / "openapi.json").read_text() == document_text()
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    pages = WebPages(cfg, session_factory, take_mail=None)  # type: ignore[arg-type]
    try:
        routes = {
            (route.method.lower(), route.resource.canonical)
            for route in pages.application().router.routes()
            if route.resource is not None and route.resource.canonical.startswith(API_PREFIX)
        }
    finally:
        pages.pool.shutdown()
        pages.sender.shutdown()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert routes == documented and len(routes) == len(ROUTES)
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for answer in operation["responses"].values():
                schema = answer["content"]["application/json"]["schema"]
                ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
                assert ref is None or ref.rsplit("/", 1)[1] in document["components"]["schemas"], path


def test_the_rate_limit_allows_a_burst_then_one_request_per_interval() -> None:
    now = [100.0]
    limit = RateLimit(60, clock=lambda: now[0])  # one a second
    assert [limit.take("a") for _ in range(60)] == [None] * 60
    assert limit.take("a") == 1 and limit.take("b") is None
    now[0] += 1.0
    assert limit.take("a") is None and limit.take("a") == 1
    now[0] += 600
    assert [limit.take("a") for _ in range(60)] == [None] * 60  # refilled up to the burst, no more
    assert limit.take("a") == 1
