"""A browser without JavaScript for the customers' form pages (tests/test_web_my.py, test_web_new.py):
urllib with a cookie jar, the CSRF field read from the form as a browser would send it back, url-encoded
and multipart POSTs, and an X-Forwarded-For to act as different clients behind the reverse proxy.
Also the fixtures of a `maild serve` configuration with `[web] listen` on a free port."""

from __future__ import annotations

import http.cookiejar
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from maild.config import Config, load_config
from tests.daemon import free_port, write_config

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
Response = tuple[int, str]


@pytest.fixture(name="web_port")
def web_port_fixture() -> int:
    return free_port()


@pytest.fixture(name="web_config")
def web_config_fixture(tmp_path: Path, data_dir: Path, database_url: str, web_port: int) -> Path:
    web = f'[web]\nlisten = "127.0.0.1:{web_port}"\npublic_url = "http://127.0.0.1:{web_port}"\n'
    return write_config(
        tmp_path / "serve.toml",
        data_dir,
        database_url,
        listen={"smtp": f"127.0.0.1:{free_port()}"},
        extra=web,
    )


@pytest.fixture(name="web_cfg")
def web_cfg_fixture(web_config: Path) -> Config:
    return load_config(str(web_config))


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a form with `files` as (filename, content type, bytes) in "attachments"."""
    boundary = "----maildtest" + secrets.token_hex(8)
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode()
        )
    for filename, content_type, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="attachments"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + data)
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Browser:
    def __init__(self, base: str, client: str = "") -> None:
        self.base = base.rstrip("/")
        self.client = client  # X-Forwarded-For: the client's address as our proxy would pass it
        self.headers: dict[str, str] = {}  # sent with every POST (Origin, Sec-Fetch-Site)
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def _open(self, request: urllib.request.Request) -> Response:
        if self.client:
            request.add_header("X-Forwarded-For", self.client)
        try:
            with self.opener.open(request, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get(self, path: str) -> Response:
        return self._open(urllib.request.Request(self.url(path)))

    def csrf(self, path: str) -> str:
        """The form's CSRF field, as the form page at `path` gives it (and its cookie, kept in the jar)."""
        status, page = self.get(path)
        assert status == 200, page
        found = CSRF.search(page)
        assert found is not None, page
        return found.group(1)

    def post(
        self, path: str, fields: dict[str, str], files: list[tuple[str, str, bytes]] | None = None
    ) -> Response:
        """The form at `path` sent with `fields` (its CSRF field added unless `fields` has one)."""
        return self.send(path, {"csrf": self.csrf(path), **fields}, files)

    def send(
        self, path: str, fields: dict[str, str], files: list[tuple[str, str, bytes]] | None = None
    ) -> Response:
        """A POST of exactly `fields` (and `files`: multipart)."""
        if files is None:
            body, content_type = urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
        else:
            body, content_type = multipart(fields, files)
        request = urllib.request.Request(self.url(path), data=body, method="POST")
        request.add_header("Content-Type", content_type)
        for name, value in self.headers.items():
            request.add_header(name, value)
        return self._open(request)
