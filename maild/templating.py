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


def desk_override_dir(template_root: Path, desk_name: str) -> Path:
    return template_root / desk_name


def render(template_root: Path, desk_name: str, name: str, variables: dict[str, Any]) -> Rendered:
    env = _environment(desk_override_dir(template_root, desk_name))
    subject = " ".join(env.get_template(f"{name}.subject.j2").render(variables).split())
    text = env.get_template(f"{name}.txt.j2").render(variables)
    try:
        html: str | None = env.get_template(f"{name}.html.j2").render(variables)
    except TemplateNotFound:
        html = None
    return Rendered(subject=subject, text=text, html=html)
