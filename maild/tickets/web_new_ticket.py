"""A ticket opened from the web form `/new/<desk>` (issue 18): the form's fields checked, then written as
the mail the customer would have sent (From them, To the desk's primary address, Cc their CCs, their
attachments), which enters the spool and the pipeline like any other: same ticket, same auto-reply, same
attachment policy. Nothing here stores anything; maild.ingress.web_new spools the mail (or keeps it until
the address is confirmed, maild.tickets.web_pending).

Error texts are English with %(name)s placeholders, marked with N_ for the translators: the page
translates them (its `_`) with their parameters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.mail.addresses import base_address, domain_of, is_valid, normalize
from maild.mail.attachment_policy import MB, Upload, refusal_item, sanitize_filename
from maild.outbound.language import N_, refusal_reason
from maild.storage.models import Agent, Desk, DeskAddress
from maild.tickets.ticket_ops import refused_by_desk

NAME_MAX = 100
ADDRESS_MAX = 254  # RFC 5321's path limit less the brackets
SUBJECT_MAX = 200
TEXT_MAX = 20_000
CC_MAX = 10
FILES_MAX = 10
TOTAL_FILES_MB = 25  # all attachments together, whatever the desk's per-file limit
REQUEST_MAX_BYTES = TOTAL_FILES_MB * MB + 200_000  # the form's text fields and multipart overhead on top
_SEPARATORS = re.compile(r"[\s,;]+")
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}")


@dataclass(frozen=True)
class FieldError:
    field: str  # the form field it is about
    text: str  # English, translated by the page
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    name: str
    address: str
    subject: str
    ccs: tuple[str, ...]
    text: str
    uploads: tuple[Upload, ...]


def _one_line(value: str) -> str:
    """Whitespace (newlines included: a header cannot hold them) made single spaces; control and invisible
    format characters (bidirectional overrides) dropped."""
    kept = "".join(c for c in value if unicodedata.category(c) not in {"Cc", "Cf"} or c in "\t\n\r")
    return " ".join(kept.split())


def _address_error(field_name: str, address: str, staff: set[str]) -> FieldError | None:
    if not is_valid(address) or len(address) > ADDRESS_MAX:
        return FieldError(field_name, N_("%(address)s is not a valid e-mail address."), {"address": address})
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return FieldError(field_name, N_("%(address)s is not a valid e-mail address."), {"address": address})
    if base_address(address) in staff:
        return FieldError(
            field_name,
            N_("%(address)s belongs to this help desk: use your own address."),
            {"address": address},
        )
    return None


def staff_addresses(session: Session) -> set[str]:
    """Every desk's and agent's address (sub-addresses compared by their base): never a customer or CC."""
    desks = session.scalars(select(DeskAddress.address))
    agents = session.scalars(select(Agent.email))
    return {base_address(a) for a in [*desks, *agents]}


def _text_errors(name: str, subject: str, text: str) -> list[FieldError]:
    errors = []
    if len(name) > NAME_MAX:
        errors.append(
            FieldError("name", N_("Your name is too long (at most %(max)s characters)."), {"max": NAME_MAX})
        )
    if not subject:
        errors.append(FieldError("subject", N_("Please give a subject.")))
    elif len(subject) > SUBJECT_MAX:
        errors.append(
            FieldError(
                "subject", N_("The subject is too long (at most %(max)s characters)."), {"max": SUBJECT_MAX}
            )
        )
    if not text.strip():
        errors.append(FieldError("text", N_("Please write your message.")))
    elif len(text) > TEXT_MAX:
        errors.append(
            FieldError("text", N_("The message is too long (at most %(max)s characters)."), {"max": TEXT_MAX})
        )
    return errors


def _cc_errors(address: str, ccs: list[str], staff: set[str]) -> list[FieldError]:
    if len(ccs) > CC_MAX:
        return [FieldError("cc", N_("At most %(max)s addresses in copy."), {"max": CC_MAX})]
    found = [_address_error("cc", cc, staff) for cc in ccs]
    return [error for error in found if error is not None]


def _upload_errors(desk: Desk, uploads: list[Upload]) -> list[FieldError]:
    if len(uploads) > FILES_MAX:
        return [FieldError("attachments", N_("At most %(max)s attachments."), {"max": FILES_MAX})]
    if sum(len(u.data) for u in uploads) > TOTAL_FILES_MB * MB:
        return [
            FieldError(
                "attachments",
                N_("The attachments are larger than %(max)s MB together."),
                {"max": TOTAL_FILES_MB},
            )
        ]
    errors = []
    for upload in uploads:
        found = refused_by_desk(desk, upload.filename, upload.content_type, upload.data)
        if found is not None:
            reason = refusal_reason(refusal_item(upload.filename, found), desk.language)
            params = {"file": upload.filename, "reason": reason}
            errors.append(FieldError("attachments", N_("%(file)s cannot be attached: %(reason)s."), params))
    return errors


def split_ccs(value: str) -> list[str]:
    return [normalize(part) for part in _SEPARATORS.split(value) if part.strip()]


def validate(
    session: Session, desk: Desk, form: dict[str, str], uploads: list[Upload]
) -> tuple[Submission | None, list[FieldError]]:
    """The submission when every field is right, else the errors (every one found, for the page)."""
    name, subject = _one_line(form.get("name", "")), _one_line(form.get("subject", ""))
    text = form.get("text", "").replace("\r\n", "\n")
    address = normalize(form.get("address", ""))
    staff = staff_addresses(session)
    errors = _text_errors(name, subject, text)
    if not address:
        errors.append(FieldError("address", N_("Please give your e-mail address.")))
    else:
        found = _address_error("address", address, staff)
        errors.extend([found] if found is not None else [])
    ccs = [cc for cc in dict.fromkeys(split_ccs(form.get("cc", ""))) if cc != address]
    errors += _cc_errors(address, ccs, staff) + _upload_errors(desk, uploads)
    if errors:
        return None, errors
    kept = tuple(
        Upload(sanitize_filename(u.filename, u.content_type), u.content_type, u.data) for u in uploads
    )
    return Submission(name, address, subject, tuple(ccs), text, kept), []


def build_mail(submission: Submission, desk_address: str, *, now: dt.datetime) -> bytes:
    """The mail the customer would have sent: RFC 5322, MIME attachments, CRLF line ends."""
    msg = EmailMessage()
    msg["From"] = Address(display_name=submission.name, addr_spec=submission.address)
    msg["To"] = desk_address
    if submission.ccs:
        msg["Cc"] = ", ".join(submission.ccs)
    msg["Subject"] = submission.subject
    msg["Date"] = format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = make_msgid("web", domain=domain_of(desk_address) or "localhost")
    msg["MIME-Version"] = "1.0"
    msg.set_content(submission.text if submission.text.endswith("\n") else submission.text + "\n")
    for upload in submission.uploads:
        content_type = upload.content_type.lower() if _MIME_TYPE.fullmatch(upload.content_type) else ""
        maintype, _, subtype = content_type.partition("/")
        if maintype in {"", "text", "multipart", "message"}:
            maintype, subtype = "application", "octet-stream"  # bytes as they came, never re-encoded
        msg.add_attachment(upload.data, maintype=maintype, subtype=subtype, filename=upload.filename)
    return msg.as_bytes(policy=SMTP)
