"""A browser without JavaScript, for the customers' web pages in tests: GET, POST urlencoded or multipart
(with files), no redirects followed (a 303 is what a POST answers), and the pages' forms read back."""

from __future__ import annotations

import html
import http.client
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

FORM = re.compile(
    r'<form[^>]*action="(?P<action>[^"]+)"[^>]*>\s*<input type="hidden" name="csrf" value="(?P<csrf>[^"]+)"'
)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=body or None, headers=headers or {})
        answer = connection.getresponse()
        return Response(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


def get(url: str) -> Response:
    return request("GET", url)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def post(
    url: str,
    fields: dict[str, str],
    files: Sequence[tuple[str, str, bytes]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """POST `fields` (and `files`: (name, content type, bytes) as `files`), as a same-origin browser
    would (Origin set), unless `headers` say otherwise."""
    sent = {"Origin": origin(url), **(headers or {})}
    if not files:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
        return request("POST", url, urlencode(fields).encode(), sent)
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        chunks.append(value.encode() + b"\r\n")
    for filename, content_type, data in files:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
        )
        chunks.append(data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    sent["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    return request("POST", url, b"".join(chunks), sent)


def forms(page: str, base: str) -> dict[str, str]:
    """The page's forms: absolute action URL → its CSRF token."""
    return {f"{base}{html.unescape(m['action'])}": html.unescape(m["csrf"]) for m in FORM.finditer(page)}
