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

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateNotFound

from maild.mail.htmltext import html_to_text
from maild.outbound.language import SOURCE_LANGUAGE, localized_variables, render_context
from maild.outbound.template_loading import LAST_GOOD as LAST_GOOD
from maild.outbound.template_loading import NOTHING_BETTER as NOTHING_BETTER
from maild.outbound.template_loading import PARTS as PARTS
from maild.outbound.template_loading import TEMPLATE_FILE as TEMPLATE_FILE
from maild.outbound.template_loading import DeskTemplates as DeskTemplates
from maild.outbound.template_loading import TemplateProblem as TemplateProblem
from maild.outbound.template_loading import desk_dirs as desk_dirs
from maild.outbound.template_loading import desk_override_dir as desk_override_dir
from maild.outbound.template_loading import listing, load_desk
from maild.outbound.template_loading import package_names as package_names
from maild.outbound.template_loading import typo_of as typo_of
from maild.outbound.template_variables import ALWAYS
from maild.outbound.template_variables import sample_variables as sample_variables
from maild.outbound.thread_headers import AGENT_ONLY_TEMPLATES

# stdlib logging, or structlog's JSON when `maild serve` configured it (see _log_problems).
log = logging.getLogger("maild.templating")

# The names imported "as" themselves above stay importable from here (admin_cli.template_commands and the
# tests import them): template_variables and template_loading hold them.


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
    fingerprint, _ = listing(desk_override_dir(template_root, desk))
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


# --- rendering ---------------------------------------------------------------------------------------

# The desk's language is its customers': mail only agents read speaks English (as maildctl does). The
# bounce notice goes to the desk's agents though its ticket's history keeps it.
AGENT_LANGUAGE_TEMPLATES = frozenset((*AGENT_ONLY_TEMPLATES, "bounce_notice"))


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def render_with(
    templates: DeskTemplates, name: str, variables: dict[str, Any], language: str = SOURCE_LANGUAGE
) -> Rendered:
    """The text and HTML bodies are a pair: a desk that overrides only one of them gets that one's words in
    both parts (text only, or its HTML converted to text), never the package's words in the other part.
    `language`: the desk's; a mail to agents only (AGENT_LANGUAGE_TEMPLATES) stays English."""
    env = templates.env
    language = SOURCE_LANGUAGE if name in AGENT_LANGUAGE_TEMPLATES else language
    variables = {
        **render_context(language),
        **localized_variables({**ALWAYS.get(name, {}), **variables}, language),
    }
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


def render(
    template_root: Path,
    desk_name: str,
    name: str,
    variables: dict[str, Any],
    language: str = SOURCE_LANGUAGE,
) -> Rendered:
    return render_with(desk_templates(template_root, desk_name), name, variables, language)
