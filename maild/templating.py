"""Render outgoing mail from Jinja2 templates in a sandbox: per-desk overrides over package defaults.

A mail is three templates: `<name>.subject.j2`, `<name>.txt.j2` and optionally `<name>.html.j2`
(autoescaped). Templates are admin-editable, hence the sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from maild.htmltext import html_to_text
from templates import DEFAULT_DIR


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


@cache
def _environment(override_dir: Path) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(str(override_dir)), FileSystemLoader(str(DEFAULT_DIR))]),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def reload_templates() -> None:
    """Forget compiled templates (SIGHUP): Jinja notices an edited file by itself, but not a desk override
    added beside a default it has already compiled."""
    _environment.cache_clear()


def desk_override_dir(template_root: Path, desk_name: str) -> Path:
    return template_root / desk_name


def render(template_root: Path, desk_name: str, name: str, variables: dict[str, Any]) -> Rendered:
    """The text and HTML bodies are a pair: a desk that overrides only one of them gets that one's words in
    both parts (text only, or its HTML converted to text), never the package's words in the other part."""
    override_dir = desk_override_dir(template_root, desk_name)
    env = _environment(override_dir)
    subject = " ".join(env.get_template(f"{name}.subject.j2").render(variables).split())
    own_text = (override_dir / f"{name}.txt.j2").is_file()
    own_html = (override_dir / f"{name}.html.j2").is_file()
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
