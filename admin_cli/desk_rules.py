"""The rules every desk change follows: valid names, number patterns that share no number with another
desk's, plain addresses, the options of `desk add` and `desk set`; and every change is audited (the
admin's OS user) and bumps the change counter, so a running `maild serve` picks it up."""

from __future__ import annotations

import argparse
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.admin_cli.common import UserError
from maild.mail.addresses import is_valid, normalize
from maild.mail.attachment_policy import parse_extensions
from maild.numbering.pattern import Pattern, PatternError
from maild.outbound.language import LANGUAGES
from maild.storage.models import Desk, RetiredPattern
from maild.tickets.business_hours import BadHours, parse_hours
from maild.tickets.notices import WHEN_NOBODY_PRESENT
from maild.tickets.statuses import normalise_status

MAX_NAME = 100  # desks.name is VARCHAR(100)


# ASCII only: the name is a directory under templates/ and an argument people type; a leading '-' would
# read as an option, a leading '.' would hide the directory.
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_NAME - 1}}}")


NAME_RULE = f"use 1-{MAX_NAME} letters (A-Z, a-z), digits, '-' or '_', starting with a letter or digit"


MAX_SENDER_NAME = 200  # desks.sender_name is VARCHAR(200)


# (option, help); each is --option / --no-option on `desk add` and `desk set`.
_SWITCHES = (
    ("auto_reply", "answer new tickets with the ticket_created mail (default on)"),
    (
        "hijack_guard",
        "a stranger quoting a ticket's number in the subject, or answering one of its mails by "
        "In-Reply-To/References, gets a new ticket linked to it (default on)",
    ),
    ("clients_only", "only known contacts may open tickets by mail; others are refused (default off)"),
    ("replies_only", "new tickets by mail are refused with the replies_only_refusal mail (default off)"),
    ("web_ratings", "customers may rate each agent reply 1-5 on the ticket page (default off)"),
    ("web_new_tickets", "anyone may open a ticket with the web form /new/<desk> (default off)"),
    (
        "web_confirm_address",
        "a ticket from the web form is opened only once its address is confirmed by a mailed link "
        "(default off)",
    ),
)


def option_arguments(parser: argparse.ArgumentParser) -> None:
    for option, text in _SWITCHES:
        parser.add_argument(
            f"--{option.replace('_', '-')}", dest=option, action=argparse.BooleanOptionalAction, help=text
        )
    parser.add_argument(
        "--reopen-days",
        type=int,
        help="a reply to a ticket closed longer ago opens a new linked ticket (default 14)",
    )
    parser.add_argument(
        "--allowed-extensions",
        help="attachments kept, e.g. 'pdf,png,jpg' ('' = any but executables and scripts, the default)",
    )
    parser.add_argument("--max-attachment-mb", type=int, help="larger attachments are refused (default 25)")
    parser.add_argument(
        "--auto-close-hours",
        type=int,
        help="close tickets after this many hours without activity, with the auto_close mail (0 = never, "
        "the default)",
    )
    parser.add_argument(
        "--auto-close-statuses",
        help="only tickets in these statuses are auto-closed (default 'waiting,resolved')",
    )
    parser.add_argument(
        "--language",
        choices=LANGUAGES,
        help="the customers' language: mail templates, web pages, status names, dates (default en)",
    )
    parser.add_argument(
        "--when-nobody-present",
        choices=WHEN_NOBODY_PRESENT,
        help="with none of the desk's agents present (maildctl agent away): notify-all tells every active "
        "agent anyway (the default); desk-unavailable tells nobody and sends the customer the "
        "desk_unavailable mail, once per ticket",
    )
    parser.add_argument(
        "--business-hours",
        metavar="HOURS",
        help="the desk's hours in its --timezone, for rules' inside/outside business hours, e.g. "
        "'mon-fri 09:00-17:00, sat 10:00-14:00' ('' = none)",
    )
    parser.add_argument(
        "--sender-name",
        metavar="TEXT",
        help="the name on the desk's mail, e.g. 'ACME Support' (default: the desk's name)",
    )


def desk_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, checked; the ones not given are left out."""
    options = {option: getattr(args, option) for option, _ in _SWITCHES if getattr(args, option) is not None}
    if args.reopen_days is not None:
        if args.reopen_days < 0:
            raise UserError(f"--reopen-days must be 0 or more, got {args.reopen_days}")
        options["reopen_days"] = args.reopen_days
    if args.max_attachment_mb is not None:
        if not 1 <= args.max_attachment_mb <= 2048:
            raise UserError(f"--max-attachment-mb must be between 1 and 2048, got {args.max_attachment_mb}")
        options["max_attachment_mb"] = args.max_attachment_mb
    if args.auto_close_hours is not None:
        if not 0 <= args.auto_close_hours <= 24 * 3650:
            raise UserError(
                f"--auto-close-hours must be between 0 (never) and 87600, got {args.auto_close_hours}"
            )
        options["auto_close_hours"] = args.auto_close_hours
    if args.business_hours is not None:
        try:
            parse_hours(args.business_hours)
        except BadHours as exc:
            raise UserError(f"--business-hours: {exc}") from None
        options["business_hours"] = " ".join(args.business_hours.split()).lower()
    if args.auto_close_statuses is not None:
        # Checked against the desk's statuses (custom ones too) by _check_auto_close once the desk is read.
        statuses = dict.fromkeys(
            normalise_status(s) for s in args.auto_close_statuses.split(",") if s.strip()
        )
        options["auto_close_statuses"] = ",".join(statuses)
    if args.allowed_extensions is not None:
        extensions = parse_extensions(args.allowed_extensions)
        bad = sorted(e for e in extensions if not e.isalnum())
        if bad:
            raise UserError(
                f"invalid --allowed-extensions {args.allowed_extensions!r}: {bad[0]!r} is not an extension; "
                "give a list like 'pdf,png,jpg'"
            )
        options["allowed_extensions"] = ",".join(sorted(extensions))
    if args.sender_name is not None:
        options["sender_name"] = sender_name(args.sender_name)
    if args.language is not None:
        options["language"] = args.language
    if args.when_nobody_present is not None:
        options["when_nobody_present"] = args.when_nobody_present
    return options


def sender_name(text: str) -> str:
    """One line for the From header: line breaks or control characters would break (or forge) headers."""
    name = text.strip()
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in name):
        raise UserError(f"invalid --sender-name {text!r}: give one line without control characters")
    if len(name) > MAX_SENDER_NAME:
        raise UserError(f"--sender-name is longer than {MAX_SENDER_NAME} characters")
    return name


def desk_name(text: str) -> str:
    """The one rule for desk names, used by `desk add` and `desk rename`."""
    name = text.strip()
    if not _NAME.fullmatch(name):
        raise UserError(f"invalid desk name {text!r}: {NAME_RULE}")
    return name


def check_name_free(session: Session, name: str, desk_id: int | None = None) -> None:
    """Names differing only in case would be one template directory on a case-insensitive file system."""
    query = select(Desk.name).where(func.lower(Desk.name) == name.lower())
    if desk_id is not None:
        query = query.where(Desk.id != desk_id)
    taken = session.scalars(query).first()
    if taken is not None:
        raise UserError(f"desk {taken!r} exists already: pick another name")


def parse_pattern(text: str) -> Pattern:
    try:
        return Pattern(text)
    except PatternError as exc:
        raise UserError(f"invalid --pattern {text!r}: {exc}") from None


def check_overlaps(session: Session, pattern: Pattern, desk_id: int | None = None) -> None:
    """No other desk's current or retired pattern may share a number with `pattern` (the desk's own
    retired ones may: allocation skips numbers that exist)."""
    others = select(Desk)
    retired = select(RetiredPattern.pattern, Desk.name).join(Desk, Desk.id == RetiredPattern.desk_id)
    if desk_id is not None:
        others = others.where(Desk.id != desk_id)
        retired = retired.where(RetiredPattern.desk_id != desk_id)
    for other in session.scalars(others.order_by(Desk.name)):
        if pattern.overlaps(Pattern(other.pattern)):
            raise UserError(
                f"pattern {pattern.source!r} could produce numbers of desk {other.name!r} "
                f"({other.pattern}): give it a distinct prefix"
            )
    for source, name in session.execute(retired.order_by(RetiredPattern.id)):
        if pattern.overlaps(Pattern(source)):
            raise UserError(
                f"pattern {pattern.source!r} could produce numbers of desk {name!r} "
                f"(its retired pattern {source}, whose numbers still thread): give it a distinct prefix"
            )


def desk_address(text: str, option: str = "--address") -> str:
    address = normalize(text)
    if not is_valid(address) or "+" in address.partition("@")[0]:
        raise UserError(f"invalid {option} {address!r}: give a plain address like support@example.com")
    return address


def check_auto_close(options: dict[str, Any], text: str | None, allowed: Sequence[str]) -> None:
    """--auto-close-statuses names statuses the desk has (built-in or its own), never `closed`."""
    if "auto_close_statuses" not in options:
        return
    statuses = [s for s in options["auto_close_statuses"].split(",") if s]
    unknown = [s for s in statuses if s not in allowed or s == "closed"]
    if not statuses or unknown:
        raise UserError(
            f"invalid --auto-close-statuses {text!r}: give a list of "
            f"{', '.join(s for s in allowed if s != 'closed')} (custom ones: 'maildctl status add')"
        )
