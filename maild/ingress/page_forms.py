"""What every form of the customers' web pages needs (issue 18): a CSRF token, a cross-site check, and a
bounded reading of the posted body (urlencoded or multipart, with uploads). Reused by every page with a
form: the ticket page's reply, close and rating forms (maild.ingress.web_actions), /my and /new.

CSRF: a form carries `csrf_token(key, scope, form)`, an HMAC under the links' key over the page it is on
(`scope`: the ticket page's token, or any string naming the page) and the form's name; `csrf_ok` compares
in constant time. A forged cross-site form would need the page's secret token to make it, and the page's
token already is what lets anyone act on the ticket: the HMAC adds that a POST must come from a page we
rendered for that form. Besides, `cross_site` refuses a request a browser marks as coming from another
site (Sec-Fetch-Site) or whose Origin names another origin. Our pages send `Referrer-Policy: no-referrer`,
under which browsers send `Origin: null` with our own forms: "null" is left to the token to judge.

Messages for the customer are plain English here (`N_` marks them for the catalog); the templates show
them through gettext, with their `args` filled in escaped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web
from multidict import MultiDict

from maild.mail.attachment_policy import Upload
from maild.outbound.language import N_

CSRF_FIELD = "csrf"
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Problem:
    """A message for the page: an English text with %(name)s places, and what goes there."""

    text: str
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FormLimits:
    """How much one POST may carry: `file_bytes` each file, `total_bytes` all files, `field_bytes` all
    other fields, `files` how many. A body beyond `body_bytes` is cut off (413)."""

    file_bytes: int
    total_bytes: int
    field_bytes: int = 200_000
    files: int = 10
    body_bytes: int = 64 * 1_000_000


@dataclass
class PostedForm:
    fields: MultiDict[str] = field(default_factory=MultiDict)
    uploads: list[Upload] = field(default_factory=list)
    problem: Problem | None = None  # set: the body broke a limit (what was read is not to be used)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def csrf_token(key: bytes, scope: str, form: str) -> str:
    mac = hmac.new(key, f"csrf:{scope}:{form}".encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode("ascii")


def csrf_ok(key: bytes, scope: str, form: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), csrf_token(key, scope, form).encode())


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(request: web.Request, public_url: str) -> bool:
    """True when the browser says the request comes from another site, or its Origin is another origin
    than public_url's (or, reached directly, the request's own)."""
    if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return False  # no-referrer pages send "null" with their own forms; the CSRF token decides
    ours = {_origin_of(public_url)} if public_url else set()
    ours.add(f"{request.scheme}://{request.host}".lower())
    return origin.lower().rstrip("/") not in ours


async def read_form(request: web.Request, limits: FormLimits) -> PostedForm:
    """The posted fields and files within `limits`. Over a limit: `problem` set and the rest of the body
    read and dropped (so the browser gets the page with the message, not a reset connection)."""
    if (request.content_length or 0) > limits.body_bytes:
        raise web.HTTPRequestEntityTooLarge(limits.body_bytes, request.content_length or 0)
    if request.content_type != "multipart/form-data":
        return PostedForm(MultiDict((k, v) for k, v in (await request.post()).items() if isinstance(v, str)))
    form = PostedForm()
    reader = await request.multipart()
    counts = _Counts()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            await part.release()  # a nested multipart: no form of ours sends one
            continue
        data = await _read_part(part, limits, counts)
        if form.problem is not None or counts.problem is not None:
            form.problem = form.problem or counts.problem
            continue
        if part.filename is None:
            form.fields.add(part.name or "", data.decode("utf-8", errors="replace"))
        elif part.filename or data:  # an empty file input sends a part without name or bytes
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            form.uploads.append(Upload(part.filename, content_type, data))
    return form


@dataclass
class _Counts:
    body: int = 0
    fields: int = 0
    files: int = 0
    file_count: int = 0
    problem: Problem | None = None


async def _read_part(part: BodyPartReader, limits: FormLimits, counts: _Counts) -> bytes:
    """One part's bytes; past a limit: counts.problem set, the part drained and b"" returned."""
    is_file = part.filename is not None
    if is_file and part.filename:
        counts.file_count += 1
        if counts.file_count > limits.files:
            counts.problem = counts.problem or Problem(
                N_("At most %(count)s files can be sent at once."), {"count": str(limits.files)}
            )
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        counts.body += len(chunk)
        if counts.body > limits.body_bytes:
            raise web.HTTPRequestEntityTooLarge(limits.body_bytes, counts.body)
        size += len(chunk)
        if counts.problem is None:
            counts.problem = _over_limit(part, size, counts, limits, len(chunk))
        if counts.problem is None:
            chunks.append(chunk)
    return b"".join(chunks) if counts.problem is None else b""


def _over_limit(
    part: BodyPartReader, size: int, counts: _Counts, limits: FormLimits, added: int
) -> Problem | None:
    if part.filename is None:
        counts.fields += added
        if counts.fields > limits.field_bytes:
            return Problem(N_("The text is too long."))
        return None
    counts.files += added
    if size > limits.file_bytes:
        return Problem(
            N_("%(name)s is larger than the limit of %(limit)s MB per file."),
            {"name": part.filename or "", "limit": _mb(limits.file_bytes)},
        )
    if counts.files > limits.total_bytes:
        return Problem(
            N_("The files together are larger than the limit of %(limit)s MB."),
            {"limit": _mb(limits.total_bytes)},
        )
    return None


def _mb(size: int) -> str:
    return f"{size / 1_000_000:g}"
