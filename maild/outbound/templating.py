"""Render outgoing mail from Jinja2 templates in a sandbox: per-desk overrides over package defaults.

A mail is three templates: `<name>.subject.j2`, `<name>.txt.j2` and optionally `<name>.html.j2`
(autoescaped). Templates are admin-editable, hence the sandbox.

A desk's overrides (`<template root>/<desk name>/*.j2`) are used as a validated snapshot, never read from
disk at render time: every file is compiled and rendered on trial with sample variables of its template
(TEMPLATE_VARIABLES; undefined variables are errors), twice — once with every optional value set, once
with them empty — so that both sides of an `{% if %}` are tried. A file that fails is refused: logged at
error (`template_invalid`), and the desk keeps the last good version of that file, else the package
default. Before, a broken override was found only when a customer silently got no auto-reply.

The snapshot of a desk is taken at its first use, again whenever a file of the desk's directory changes
(name, size, modification time or inode: an edit or an install is picked up with the next mail), and for
every desk on `reload_templates(root)` (`maild serve` at start and on SIGHUP). `check_templates` runs the
same checks on what is on disk now, without logging (`maildctl template check`, `maildctl health`).

A name that is not a package template is a template of the desk's own, which only an escalation rule's
`--remind` uses: it gets the reminder's variables. A name close to a package template's (a typo such as
`ticket_creatd`) is reported, since such a file is never used."""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2 import Environment as JinjaEnvironment
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from maild.mail.attachment_policy import sample_refused_attachments
from maild.mail.htmltext import html_to_text
from maild.templates import DEFAULT_DIR

# stdlib logging, or structlog's JSON when `maild serve` configured it (see _log_problems).
log = logging.getLogger("maild.templating")

PARTS = ("subject", "txt", "html")
TEMPLATE_FILE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,49})\.(?P<part>subject|txt|html)\.j2")
REMINDER = "reminder"  # what a desk's own template is: the only mail that takes a name of the desk's own
TYPO_CUTOFF = 0.8  # difflib ratio from which a desk's own name is taken for a misspelt package name

# --- the variables each template gets (built in maild/outbound/outgoing.py, maild/tickets/replies.py,
# pipeline/notify.py, maild/tickets/escalations.py, pipeline/commands.py, pipeline/bounce.py,
# maild/tickets/merge.py, maild/tickets/autoclose.py) ----------------------------------------------------

_TICKET = ("ticket_title", "ticket_number", "ticket_url", "desk_name", "customer_name")
_AGENT_NOTICE = (
    "ticket_status",
    "ticket_priority",
    "assigned_agent",
    "customer_email",
    "agent_name",
    "note_address",
)
_CUSTOMER_MAIL = ("sender_name", "sender_email", "comment_content", "attachments", "automatic")
TEMPLATE_VARIABLES: dict[str, tuple[str, ...]] = {
    "agent_reply": (*_TICKET, "agent_name", "comment_content", "refused_attachments"),
    "agent_reply_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "sender_name",
        "sender_email",
        "comment_content",
        "is_note",
        "attachments",
    ),
    "assigned_notice": (*_TICKET, *_AGENT_NOTICE, *_CUSTOMER_MAIL, "assigned_by"),
    "auto_close": (*_TICKET, "inactive_for", "reopen_days"),
    "bounce_notice": (*_TICKET, "bounced_address", "bounce_status", "bounce_diagnostic", "bounced_subject"),
    "collision_notice": (*_TICKET, "agent_name", "held_text", "missed"),
    "command_errors": (*_TICKET, "agent_name", "errors_text"),
    "customer_reply_notice": (*_TICKET, *_AGENT_NOTICE, *_CUSTOMER_MAIL),
    "escalation_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "rule_name",
        "after_hours",
        "in_status",
        "in_status_for",
        "actions",
    ),
    "flag_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "flagged_by",
        "flag_note",
        "sender_name",
        "sender_email",
        "comment_content",
    ),
    "flood_digest_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "sender_name",
        "sender_email",
        "held_mails",
        "held_count",
        "held_more",
        "burst_limit",
        "burst_minutes",
    ),
    "new_ticket_notice": (*_TICKET, *_AGENT_NOTICE, *_CUSTOMER_MAIL),
    REMINDER: (*_TICKET, "ticket_status", "waiting_for", "rule_name"),
    "replies_only_refusal": ("desk_name", "customer_name", "original_subject"),
    "ticket_created": (*_TICKET, "refused_attachments"),
    "ticket_merged": (*_TICKET, "merged_numbers"),
}
# Variables a template has whoever queues it: callers that predate them (`ticket split --notify`, an admin's
# `ticket reply` without the pipeline) would otherwise fail a desk template that uses them.
ALWAYS: dict[str, dict[str, Any]] = {
    "ticket_created": {"refused_attachments": []},
    "agent_reply": {"refused_attachments": []},
}

_CUSTOMER_TEXT = "The printer in room 4 is on fire again.\nCould someone come by?"
# variable → (value with everything set, value of a mail without the optional parts)
_SAMPLES: dict[str, tuple[Any, Any]] = {
    "ticket_title": ("Printer on fire", "Printer on fire"),
    "ticket_number": ("SUP-26-03-1", "SUP-26-03-1"),
    "ticket_url": ("https://help.example.com/t/SUP-26-03-1", ""),
    "desk_name": ("support", "support"),
    "customer_name": ("Carol Customer", "carol@customer.example"),
    "ticket_status": ("open", "open"),
    "ticket_priority": ("normal", "normal"),
    "assigned_agent": ("Anna Agent", ""),
    "customer_email": ("carol@customer.example", "carol@customer.example"),
    "agent_name": ("Anna Agent", "Anna Agent"),
    "note_address": ("support+note.sample@example.com", ""),
    "sender_name": ("Carol Customer", ""),
    "sender_email": ("carol@customer.example", ""),
    "comment_content": (_CUSTOMER_TEXT, ""),
    "attachments": (
        [
            {"filename": "photo.jpg", "content_type": "image/jpeg", "size": 48213, "refused_reason": ""},
            {
                "filename": "setup.exe",
                "content_type": "application/x-msdownload",
                "size": 1200000,
                "refused_reason": "executable or script (.exe) refused",
            },
        ],
        [],
    ),
    "automatic": ("out-of-office", ""),
    "assigned_by": ("admin", "admin"),
    "is_note": (True, False),
    "inactive_for": ("14 days", "14 days"),
    "reopen_days": (14, 0),
    "bounced_address": ("carol@customer.example", "carol@customer.example"),
    "bounce_status": ("5.1.1", ""),
    "bounce_diagnostic": ("550 5.1.1 <carol@customer.example>: user unknown", ""),
    "bounced_subject": ("[SUP-26-03-1] Printer on fire", "[SUP-26-03-1] Printer on fire"),
    "held_text": ("Have you tried turning it off and on again?", ""),
    "missed": (
        [
            {
                "sender_name": "Carol Customer",
                "sender_email": "carol@customer.example",
                "kind": "customer",
                "at": "2026-03-07 12:30 UTC",
                "text": "It is out now.",
            }
        ],
        [],
    ),
    "errors_text": ("#status nosuch: no status 'nosuch' on desk support", "#close: not allowed"),
    "rule_name": ("stale", "stale"),
    "after_hours": ("24", "0.5"),
    "in_status": ("waiting", "waiting"),
    "in_status_for": ("1 day 2 hours", "30 minutes"),
    "actions": (["status open → waiting", "priority normal → urgent"], []),
    "held_mails": (
        [
            {"ticket_number": "SUP-26-03-2", "subject": "Printer on fire", "at": "2026-03-07 12:30 UTC"},
            {"ticket_number": "SUP-26-03-3", "subject": "", "at": "2026-03-07 12:31 UTC"},
        ],
        [{"ticket_number": "SUP-26-03-2", "subject": "", "at": "2026-03-07 12:30 UTC"}],
    ),
    "held_count": (4, 1),
    "held_more": (2, 0),
    "burst_limit": (5, 5),
    "burst_minutes": (10, 10),
    "flagged_by": ("admin", "admin"),
    "flag_note": ("Please call them back.", ""),
    "original_subject": ("Printer on fire", "(no subject)"),
    "merged_numbers": (["SUP-26-03-2", "SUP-26-03-3"], ["SUP-26-03-2"]),
    "waiting_for": ("3 days", "3 days"),
    "refused_attachments": (sample_refused_attachments(), []),
}


def package_names() -> frozenset[str]:
    """The package's templates: the names a desk may override."""
    return frozenset(
        match["name"] for path in DEFAULT_DIR.iterdir() if (match := TEMPLATE_FILE.fullmatch(path.name))
    )


def variables_of(name: str) -> tuple[str, ...]:
    """The variables template `name` gets; a desk's own template is a reminder."""
    return TEMPLATE_VARIABLES.get(name, TEMPLATE_VARIABLES[REMINDER])


def sample_variables(name: str, *, sparse: bool = False) -> dict[str, Any]:
    """Representative values of every variable template `name` gets; `sparse`: optional ones empty."""
    return {variable: _SAMPLES[variable][sparse] for variable in variables_of(name)}


# --- problems ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateProblem:
    """What is wrong with one file of a desk's templates."""

    desk: str
    file: str  # the file name in the desk's directory, e.g. "ticket_created.txt.j2"
    error: str  # one line
    line: int | None = None  # in the file, when the error has one

    def __str__(self) -> str:
        where = f" line {self.line}" if self.line is not None else ""
        return f"{self.desk}/{self.file}{where}: {self.error}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _line_of(exc: BaseException, filename: str) -> int | None:
    """The template line a render error happened on: Jinja puts template frames in the traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    for wanted in (lambda f: f == filename, lambda f: f.endswith(".j2")):
        for frame in reversed(frames):
            if wanted(frame.filename):
                return frame.lineno
    return None


class _SourceLoader(BaseLoader):
    """Templates from memory (file name → (source, path)); the path names the file in errors."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]) -> None:
        self.sources = dict(sources)

    def get_source(self, environment: JinjaEnvironment, template: str) -> tuple[str, str, Callable[[], bool]]:
        if template not in self.sources:
            raise TemplateNotFound(template)
        source, path = self.sources[template]
        return source, path, lambda: True

    def list_templates(self) -> list[str]:
        return sorted(self.sources)


def _environment(sources: Mapping[str, tuple[str, str]]) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=ChoiceLoader([_SourceLoader(sources), FileSystemLoader(str(DEFAULT_DIR))]),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _trial(env: SandboxedEnvironment, file: str, path: str) -> tuple[str, int | None] | None:
    """(error, line) when the file does not compile or does not render with its template's variables."""
    name = file.split(".", 1)[0]
    try:
        template = env.get_template(file)
        for sparse in (False, True):
            template.render(sample_variables(name, sparse=sparse))
    except TemplateSyntaxError as exc:
        # An error in a file this one includes: its line is in that file, so name it.
        inner = exc.name if exc.name and exc.name != file else None
        where = f"in {inner} line {exc.lineno}: " if inner else ""
        return _one_line(where + (exc.message or str(exc))), None if inner else exc.lineno
    except Exception as exc:  # anything a render raises is what would have failed the customer's mail
        return _one_line(f"{type(exc).__name__}: {exc}"), _line_of(exc, path)
    return None


def _naming_problems(desk: str, names: list[str], package: frozenset[str]) -> list[TemplateProblem]:
    """Files that are not templates, misspelt package names, a desk's own template without subject or
    body."""
    problems: list[TemplateProblem] = []
    own_parts: dict[str, set[str]] = {}
    for file in names:
        match = TEMPLATE_FILE.fullmatch(file)
        if match is None:
            problems.append(
                TemplateProblem(
                    desk, file, "not a template file name: use NAME.subject.j2, NAME.txt.j2 or NAME.html.j2"
                )
            )
            continue
        name = match["name"]
        if name in package:
            continue
        typo = typo_of(name, package)
        if typo is not None:
            problems.append(
                TemplateProblem(desk, file, f"unknown template name {name!r}: did you mean {typo}?")
            )
            continue
        own_parts.setdefault(name, set()).add(match["part"])
    for name, parts in sorted(own_parts.items()):
        if "subject" not in parts or not parts & {"txt", "html"}:
            first = sorted(f for f in names if f.startswith(f"{name}."))[0]
            problems.append(
                TemplateProblem(
                    desk,
                    first,
                    f"{name!r} is no package template, so it is a reminder of the desk's own: it needs "
                    f"{name}.subject.j2 and {name}.txt.j2 or {name}.html.j2",
                )
            )
    return problems


def typo_of(name: str, package: frozenset[str]) -> str | None:
    """The package template a desk's own name is probably a misspelling of. A name that extends a package
    name (`reminder_gentle`) is deliberate."""
    for close in difflib.get_close_matches(name, sorted(package), n=1, cutoff=TYPO_CUTOFF):
        if not name.startswith(close):
            return close
    return None


# --- snapshots ----------------------------------------------------------------------------------------

Fingerprint = tuple[tuple[str, int, int, int], ...]


def _listing(directory: Path) -> tuple[Fingerprint, dict[str, Path]]:
    """The files of a desk's directory (no dot files, no editor backups `~`) and their fingerprint."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return (), {}
    files: dict[str, Path] = {}
    stamps = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith("~") or not entry.is_file():
            continue
        stat = entry.stat()
        files[entry.name] = Path(entry.path)
        stamps.append((entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(sorted(stamps)), files


# What renders in a refused file's place.
LAST_GOOD, PACKAGE_DEFAULT = "the last good version", "the package default"
NOTHING_BETTER = "nothing better (no good version, no package default): the file fails when used"
# A refused body part whose sibling is the desk's: render_with pairs the bodies, never the package's words.
FROM_OWN_HTML = "the text of the desk's HTML part"
NO_HTML = "no HTML part (the desk's text part alone)"


@dataclass(frozen=True)
class _Refused:
    problem: TemplateProblem
    using: str  # what renders in its place: one of the stand-ins above


@dataclass(frozen=True)
class DeskTemplates:
    """One validated snapshot of a desk's overrides."""

    fingerprint: Fingerprint
    sources: dict[str, tuple[str, str]]  # file name → (source, path): what renders
    env: SandboxedEnvironment
    problems: tuple[TemplateProblem, ...] = ()
    refused: tuple[_Refused, ...] = ()


def load_desk(
    template_root: Path,
    desk: str,
    previous: DeskTemplates | None = None,
    *,
    package: frozenset[str] | None = None,
) -> DeskTemplates:
    """Read and validate a desk's overrides. A refused file keeps `previous`'s version when it had a good
    one; else a package template falls back to the package default. A desk's own template with no good
    version stays as it is: nothing better exists, and it fails when used with its own error."""
    package = package_names() if package is None else package
    fingerprint, files = _listing(desk_override_dir(template_root, desk))
    problems = _naming_problems(desk, sorted(files), package)
    last_good = dict(previous.sources) if previous is not None else {}
    for item in previous.refused if previous is not None else ():
        if item.using == NOTHING_BETTER:
            last_good.pop(item.problem.file, None)
    candidates: dict[str, tuple[str, str]] = {}
    failures: dict[str, TemplateProblem] = {}
    for file, path in sorted(files.items()):
        if TEMPLATE_FILE.fullmatch(file) is None:
            continue
        try:
            candidates[file] = (path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            failures[file] = TemplateProblem(desk, file, _one_line(f"cannot be read: {exc}"))
    trial_env = _environment(candidates)
    for file, (_, path) in candidates.items():
        if typo_of(file.split(".", 1)[0], package) is not None:
            continue  # reported as misspelt: trying it with a reminder's variables would only confuse
        failure = _trial(trial_env, file, path)
        if failure is not None:
            failures[file] = TemplateProblem(desk, file, failure[0], failure[1])
    sources = {file: source for file, source in candidates.items() if file not in failures}
    usings: dict[str, str] = {}
    for file, problem in sorted(failures.items()):
        problems.append(problem)
        if file in last_good:
            sources[file], usings[file] = last_good[file], LAST_GOOD
        elif file.split(".", 1)[0] in package:
            usings[file] = PACKAGE_DEFAULT
        elif file in candidates:
            sources[file], usings[file] = candidates[file], NOTHING_BETTER
        else:
            usings[file] = NOTHING_BETTER
    refused: list[_Refused] = []
    for file, using in usings.items():
        # Said as render_with will do it, once every file's fate is known (the sibling may be refused too).
        name, _, part = file.partition(".")
        if using == PACKAGE_DEFAULT and part == "txt.j2" and f"{name}.html.j2" in sources:
            using = FROM_OWN_HTML
        elif using == PACKAGE_DEFAULT and part == "html.j2" and f"{name}.txt.j2" in sources:
            using = NO_HTML
        refused.append(_Refused(failures[file], using))
    env = trial_env if sources == candidates else _environment(sources)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.error))
    return DeskTemplates(fingerprint, sources, env, tuple(problems), tuple(refused))


def _log_problems(desk: DeskTemplates) -> None:
    """Loudly: the admin must learn of a broken template before a customer misses a mail."""
    from maild.logs import is_configured, log_event

    using = {item.problem: item.using for item in desk.refused}
    for problem in desk.problems:
        if is_configured():  # maild serve: one JSON object per line
            log_event(
                "maild.templating",
                logging.ERROR,
                "template_invalid",
                desk=problem.desk,
                file=problem.file,
                line=problem.line,
                error=problem.error,
                in_its_place=using.get(problem),
            )
        else:  # maild pipe, maildctl: the problem as the admin reads it, on stderr
            place = f"; in its place: {using[problem]}" if problem in using else ""
            log.error("template_invalid: %s%s", problem, place)


_lock = threading.Lock()
_loaded: dict[tuple[Path, str], DeskTemplates] = {}


def desk_templates(template_root: Path, desk: str) -> DeskTemplates:
    """The desk's snapshot: taken anew (and its refusals logged) when its files changed."""
    key = (template_root, desk)
    fingerprint, _ = _listing(desk_override_dir(template_root, desk))
    current = _loaded.get(key)
    if current is not None and current.fingerprint == fingerprint:
        return current
    with _lock:
        current = _loaded.get(key)
        if current is not None and current.fingerprint == fingerprint:
            return current
        fresh = load_desk(template_root, desk, current)
        _loaded[key] = fresh
    _log_problems(fresh)
    return fresh


def reload_templates(template_root: Path | None = None) -> list[TemplateProblem]:
    """Validate every desk's overrides again (SIGHUP), even unchanged ones, and log what is refused. With
    `template_root`: every desk directory under it and every desk already used; without: the desks of
    every root already used. Returns the problems found."""
    with _lock:
        keys = set(_loaded)
    if template_root is not None:
        keys = {key for key in keys if key[0] == template_root}
        keys |= {(template_root, name) for name in desk_dirs(template_root)}
    problems: list[TemplateProblem] = []
    for key in sorted(keys):
        with _lock:
            fresh = load_desk(key[0], key[1], _loaded.get(key))
            _loaded[key] = fresh
        _log_problems(fresh)
        problems.extend(fresh.problems)
    return problems


def check_templates(template_root: Path, desk: str | None = None) -> list[TemplateProblem]:
    """What is wrong with the desks' overrides on disk now (every desk directory, or `desk`'s): what the
    daemon refuses (or will refuse with the next mail) and files that are never used. Logs nothing."""
    desks = [desk] if desk is not None else desk_dirs(template_root)
    package = package_names()
    return [problem for name in desks for problem in load_desk(template_root, name, package=package).problems]


def desk_override_dir(template_root: Path, desk_name: str) -> Path:
    return template_root / desk_name


def desk_dirs(template_root: Path) -> list[str]:
    """The desks that have a directory of overrides (by name)."""
    try:
        return sorted(entry.name for entry in os.scandir(template_root) if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


# --- rendering ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def render_with(templates: DeskTemplates, name: str, variables: dict[str, Any]) -> Rendered:
    """The text and HTML bodies are a pair: a desk that overrides only one of them gets that one's words in
    both parts (text only, or its HTML converted to text), never the package's words in the other part."""
    env = templates.env
    variables = {**ALWAYS.get(name, {}), **variables}
    subject = " ".join(env.get_template(f"{name}.subject.j2").render(variables).split())
    own_text = f"{name}.txt.j2" in templates.sources
    own_html = f"{name}.html.j2" in templates.sources
    html: str | None = None
    if own_html or not own_text:
        try:
            html = env.get_template(f"{name}.html.j2").render(variables)
        except TemplateNotFound:
            html = None
    if own_html and not own_text:
        assert html is not None
        text = html_to_text(html) + "\n"
    else:
        text = env.get_template(f"{name}.txt.j2").render(variables)
    return Rendered(subject=subject, text=text, html=html)


def render(template_root: Path, desk_name: str, name: str, variables: dict[str, Any]) -> Rendered:
    return render_with(desk_templates(template_root, desk_name), name, variables)
