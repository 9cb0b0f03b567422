"""A client of the JSON API (/api/v1, issue 19) over real HTTP, and the `[web]` configuration of a
`maild serve` that serves it (tests/test_api*.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cli import ctl, ok
from tests.daemon import free_port, write_config


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any  # the JSON

    @property
    def error(self) -> str:
        """An error's message, after checking the error's shape: {"error": {"status", "message"}}."""
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        assert set(self.body) == {"error"}, self.body
        assert self.body["error"]["status"] == self.status, self.body
        message = self.body["error"]["message"]
        assert isinstance(message, str) and message and "Traceback" not in message
        return message


def api_config(tmp_path: Path, data_dir: Path, database_url: str, web_port: int, per_minute: int) -> Path:
    web = (
        f'[web]\nlisten = "127.0.0.1:{web_port}"\npublic_url = "http://127.0.0.1:{web_port}"\n'
        f"api_requests_per_minute = {per_minute}\n"
    )
    return write_config(
        tmp_path / "serve.toml",
        data_dir,
        database_url,
        listen={"smtp": f"127.0.0.1:{free_port()}"},
        extra=web,
    )


def new_token(config: Path, name: str, scope: str) -> str:
    [token] = ok(ctl(config, "api-token", "add", name, "--scope", scope)).split()
    return token


class Api:
    def __init__(self, port: int, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Answer:
        """`body` sent as JSON (or `raw` as it is); the answer's JSON (None when it is not JSON)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token or self.token:
            request.add_header("Authorization", f"Bearer {token or self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                status, answer_headers, text = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, answer_headers, text = error.code, dict(error.headers), error.read()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return Answer(status, answer_headers, parsed)

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return self.call("POST", path, body, **kwargs)
