"""The customers' language: a desk's `language` (en, de, pl, hu, pt) as gettext catalogs, the words of
statuses and priorities, dates, and the render context of the mail templates and web pages.

The catalogs are maild/locale/<language>/LC_MESSAGES/maild.po, compiled to maild.mo next to them (both in
git: a fresh clone and an installed wheel work without a build step; tests/test_languages.py fails when a
.po has an untranslated entry, a .mo is stale or a template's string is missing from a catalog).
scripts/catalogs.sh extracts the strings (babel.cfg), updates the .po files and compiles them. English is
the source language: its "translation" is the msgid itself, so English output stays what it was.

Templates speak through newstyle gettext (`{{ _("Hello %(name)s,", name=customer_name) }}`, `{% trans %}`):
the callables come with each render (`render_context`), overriding the null translations the template
environments install, so one environment serves desks of every language."""

from __future__ import annotations

import datetime as dt
import functools
import gettext as gettext_module
import logging
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from babel.support import Translations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from maild.mail.attachment_policy import EXECUTABLE, TOO_LARGE, TYPE_NOT_ALLOWED

LANGUAGES = ("en", "de", "pl", "hu", "pt")  # what the default templates and pages speak
SOURCE_LANGUAGE = "en"


def N_(text: str) -> str:  # the name gettext extractors know (pybabel's default keywords)
    """Marks `text` for the translation catalog where it is written; the template that shows it translates
    it (`{{ _(text) }}`)."""
    return text


DOMAIN = "maild"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
# Each language's CLDR locale for dates and numbers; "pt" is CLDR's Brazilian Portuguese.
BABEL_LOCALES = {"en": "en", "de": "de", "pl": "pl", "hu": "hu", "pt": "pt"}
# Variables whose values maild words in English (maild.tickets.autoclose.describe_hours, escalations'
# describe_span): said again in the desk's language before a customer's mail renders.
DURATION_VARIABLES = ("inactive_for", "waiting_for", "in_status_for")
NO_SUBJECT = "(no subject)"  # pipeline.notify's original_subject of a mail without one

log = logging.getLogger("maild.language")


def known(language: str) -> str:
    """`language` when maild speaks it, else English (a value set behind maildctl's back)."""
    return language if language in LANGUAGES else SOURCE_LANGUAGE


@functools.cache
def translations(language: str) -> gettext_module.NullTranslations:
    """The compiled catalog of `language` (loaded once per process); English: the null translations."""
    language = known(language)
    if language == SOURCE_LANGUAGE:
        return gettext_module.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
    try:
        with path.open("rb") as file:
            return Translations(file, domain=DOMAIN)
    except OSError as exc:  # a broken install: English beats no mail at all, but say so
        log.error("language_catalog_missing: %s: %s; speaking English", path, exc)
        return gettext_module.NullTranslations()


# --- statuses, priorities, durations, refused attachments -------------------------------------------


@functools.cache
def _words(language: str) -> dict[tuple[str, str], str]:
    """(kind, name) → the customer's word. Polish statuses are Sugester's (Otwarty, W trakcie, …)."""
    t = translations(language)
    return {
        ("status", "open"): t.pgettext("ticket status", "Open"),
        ("status", "in_progress"): t.pgettext("ticket status", "In progress"),
        ("status", "waiting"): t.pgettext("ticket status", "Waiting for your reply"),
        ("status", "on_hold"): t.pgettext("ticket status", "On hold"),
        ("status", "resolved"): t.pgettext("ticket status", "Resolved"),
        ("status", "closed"): t.pgettext("ticket status", "Closed"),
        ("priority", "low"): t.pgettext("ticket priority", "Low"),
        ("priority", "normal"): t.pgettext("ticket priority", "Normal"),
        ("priority", "high"): t.pgettext("ticket priority", "High"),
        ("priority", "urgent"): t.pgettext("ticket priority", "Urgent"),
    }


def _spaced(name: str) -> str:
    return name.replace("_", " ").capitalize()


def status_word(name: str, language: str) -> str:
    """A status as the customer reads it; a desk's custom status: its name, spaced."""
    return _words(known(language)).get(("status", name)) or _spaced(name)


def priority_word(name: str, language: str) -> str:
    return _words(known(language)).get(("priority", name)) or _spaced(name)


def customer_word(name: str, language: str) -> str:
    """A status or a priority (their names do not overlap) as the customer reads it."""
    words = _words(known(language))
    return words.get(("status", name)) or words.get(("priority", name)) or _spaced(name)


_DURATION_PART = re.compile(r"(\d+) (minute|hour|day)s?")
_DURATION = re.compile(rf"{_DURATION_PART.pattern}(?: {_DURATION_PART.pattern})*")


def duration(text: str, language: str) -> str:
    """An English duration as maild writes them ("3 days", "1 day 2 hours", "45 minutes") in
    `language`; any other text as it is."""
    if known(language) == SOURCE_LANGUAGE or not _DURATION.fullmatch(text):
        return text
    t = translations(language)
    units = {
        "minute": lambda n: t.ngettext("%(num)d minute", "%(num)d minutes", n),
        "hour": lambda n: t.ngettext("%(num)d hour", "%(num)d hours", n),
        "day": lambda n: t.ngettext("%(num)d day", "%(num)d days", n),
    }
    return " ".join(units[unit](int(n)) % {"num": int(n)} for n, unit in _DURATION_PART.findall(text))


def _number(text: str, language: str) -> str:
    """A decimal such as "30.2" written the language's way ("30,2")."""
    try:
        return format_decimal(Decimal(text), locale=BABEL_LOCALES[known(language)])
    except (InvalidOperation, ValueError):
        return text


def refusal_reason(refused: dict[str, Any], language: str) -> str:
    """Why an attachment was refused (a `refused_attachments` item), in `language`: the words of
    maild.mail.attachment_policy.customer_reason, which English keeps."""
    if known(language) == SOURCE_LANGUAGE:
        return str(refused.get("reason", ""))
    t = translations(language)
    code = refused.get("code")
    if code == TOO_LARGE:
        return t.gettext("it is %(size)s MB, larger than the %(limit)s MB we accept") % {
            "size": _number(str(refused.get("size_mb", "")), language),
            "limit": refused.get("limit_mb", ""),
        }
    if code == EXECUTABLE:
        return t.gettext("we do not accept programs or scripts")
    if code == TYPE_NOT_ALLOWED:
        allowed = ", ".join(f".{ext}" for ext in refused.get("allowed", []))
        return t.gettext("we accept only these types of file: %(types)s") % {"types": allowed}
    return t.gettext("it could not be accepted")


def localized_variables(variables: dict[str, Any], language: str) -> dict[str, Any]:
    """A customer mail's variables with maild's own English words (durations, refusal reasons, "(no
    subject)") said in `language`; names, numbers and the customers' text unchanged."""
    if known(language) == SOURCE_LANGUAGE:
        return variables
    t = translations(language)
    changed = dict(variables)
    for name in DURATION_VARIABLES:
        if isinstance(changed.get(name), str):
            changed[name] = duration(changed[name], language)
    if isinstance(changed.get("refused_attachments"), list):
        changed["refused_attachments"] = [
            {**item, "reason": refusal_reason(item, language)} if isinstance(item, dict) else item
            for item in changed["refused_attachments"]
        ]
    if changed.get("original_subject") == NO_SUBJECT:
        changed["original_subject"] = t.gettext("(no subject)")
    return changed


# --- dates ----------------------------------------------------------------------------------------------


@functools.cache
def _locale(language: str) -> Locale:
    return Locale.parse(BABEL_LOCALES[known(language)])


@functools.lru_cache(maxsize=8192)  # Babel's formatting is ~50 µs a time; a page shows the same ones again
def format_when(at: dt.datetime, language: str) -> str:
    """An aware time, as it is (already in the desk's zone: ticket_page.local_time), the language's way:
    its long date and short time joined as its CLDR data says, then the zone's abbreviation
    ("7 marca 2026, 10:05 CET", "7. März 2026, 10:05 CET", "March 7, 2026, 10:05 AM CET")."""
    locale = _locale(language)
    date = format_date(at, "long", locale=locale)
    time = format_time(at, "short", tzinfo=at.tzinfo, locale=locale)
    joined = locale.datetime_formats["medium"].replace("'", "").replace("{1}", date).replace("{0}", time)
    zone = at.strftime("%Z")
    return f"{joined} {zone}" if zone else joined


# --- the render context of templates --------------------------------------------------------------------


def _escaped_format(context: Context, text: str, variables: dict[str, Any]) -> str:
    """What jinja2.ext's newstyle gettext does with a translation: Markup under autoescape (the
    translator's words are trusted, the variables are escaped), and always a %-format."""
    if context.eval_ctx.autoescape:
        return Markup(text) % variables
    return text % variables


def template_callables(language: str) -> dict[str, Callable[..., str]]:
    """Newstyle `_`, `gettext`, `ngettext`, `pgettext`, `npgettext` speaking `language`: what a render
    passes to override the environment's null translations (they are resolved from the context)."""
    t = translations(language)

    @pass_context
    def gettext(context: Context, message: str, /, **variables: Any) -> str:
        return _escaped_format(context, t.gettext(message), variables)

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, num: int, /, **variables: Any) -> str:
        variables.setdefault("num", num)
        return _escaped_format(context, t.ngettext(singular, plural, num), variables)

    @pass_context
    def pgettext(context: Context, msgctxt: str, message: str, /, **variables: Any) -> str:
        variables.setdefault("context", msgctxt)
        return _escaped_format(context, t.pgettext(msgctxt, message), variables)

    @pass_context
    def npgettext(
        context: Context, msgctxt: str, singular: str, plural: str, num: int, /, **variables: Any
    ) -> str:
        variables.setdefault("context", msgctxt)
        variables.setdefault("num", num)
        return _escaped_format(context, t.npgettext(msgctxt, singular, plural, num), variables)

    return {
        "_": gettext,
        "gettext": gettext,
        "ngettext": ngettext,
        "pgettext": pgettext,
        "npgettext": npgettext,
    }


@functools.cache
def _cached_callables(language: str) -> dict[str, Callable[..., str]]:
    return template_callables(language)


def render_context(language: str) -> dict[str, Any]:
    """What every customer-facing render gets besides its own variables: the gettext callables, `lang`
    (for `<html lang>`), and the language's words of statuses, priorities and dates."""
    language = known(language)
    return {
        **_cached_callables(language),
        "lang": language,
        "status_word": functools.partial(status_word, language=language),
        "priority_word": functools.partial(priority_word, language=language),
        "format_when": functools.partial(format_when, language=language),
    }
