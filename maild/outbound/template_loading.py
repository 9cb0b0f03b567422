"""A desk's template overrides read and validated into a snapshot (DeskTemplates): every file compiled and
rendered on trial with its template's sample variables; a file that fails is refused, with what renders in
its place. See maild.outbound.templating for when snapshots are taken and how they render."""

from __future__ import annotations

import difflib
import os
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2 import Environment as JinjaEnvironment
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from maild.outbound.language import SOURCE_LANGUAGE, render_context
from maild.outbound.template_variables import sample_variables
from maild.templates import DEFAULT_DIR

PARTS = ("subject", "txt", "html")
TEMPLATE_FILE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,49})\.(?P<part>subject|txt|html)\.j2")
TYPO_CUTOFF = 0.8  # difflib ratio from which a desk's own name is taken for a misspelt package name


def package_names() -> frozenset[str]:
    """The package's templates: the names a desk may override."""
    return frozenset(
        match["name"] for path in DEFAULT_DIR.iterdir() if (match := TEMPLATE_FILE.fullmatch(path.name))
    )


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
    env = SandboxedEnvironment(
        loader=ChoiceLoader([_SourceLoader(sources), FileSystemLoader(str(DEFAULT_DIR))]),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    # Text is written {{ _("English") }} / {% trans %}: English unless a render passes a desk's language
    # (maild.outbound.language.render_context), so a snapshot serves whatever language the desk has now.
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


def _trial(env: SandboxedEnvironment, file: str, path: str) -> tuple[str, int | None] | None:
    """(error, line) when the file does not compile or does not render with its template's variables."""
    name = file.split(".", 1)[0]
    try:
        template = env.get_template(file)
        for sparse in (False, True):
            template.render({**render_context(SOURCE_LANGUAGE), **sample_variables(name, sparse=sparse)})
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


def listing(directory: Path) -> tuple[Fingerprint, dict[str, Path]]:
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
    fingerprint, files = listing(desk_override_dir(template_root, desk))
    problems = _naming_problems(desk, sorted(files), package)
    candidates, failures = _read(desk, files)
    trial_env = _environment(candidates)
    failures.update(_failed_trials(desk, trial_env, candidates, package))
    sources = {file: source for file, source in candidates.items() if file not in failures}
    usings: dict[str, str] = {}
    last_good = _last_good(previous)
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
    refused = _refusals(failures, usings, sources)
    env = trial_env if sources == candidates else _environment(sources)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.error))
    return DeskTemplates(fingerprint, sources, env, tuple(problems), tuple(refused))


def _read(desk: str, files: dict[str, Path]) -> tuple[dict[str, tuple[str, str]], dict[str, TemplateProblem]]:
    """(file name → (source, path)) of the desk's template files, and the files that cannot be read."""
    candidates: dict[str, tuple[str, str]] = {}
    failures: dict[str, TemplateProblem] = {}
    for file, path in sorted(files.items()):
        if TEMPLATE_FILE.fullmatch(file) is None:
            continue
        try:
            candidates[file] = (path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            failures[file] = TemplateProblem(desk, file, _one_line(f"cannot be read: {exc}"))
    return candidates, failures


def _failed_trials(
    desk: str,
    env: SandboxedEnvironment,
    candidates: dict[str, tuple[str, str]],
    package: frozenset[str],
) -> dict[str, TemplateProblem]:
    """The files that do not compile or render with their template's sample variables."""
    failures: dict[str, TemplateProblem] = {}
    for file, (_, source_path) in candidates.items():
        if typo_of(file.split(".", 1)[0], package) is not None:
            continue  # reported as misspelt: trying it with a reminder's variables would only confuse
        failure = _trial(env, file, source_path)
        if failure is not None:
            failures[file] = TemplateProblem(desk, file, failure[0], failure[1])
    return failures


def _last_good(previous: DeskTemplates | None) -> dict[str, tuple[str, str]]:
    """The sources of `previous` that passed (a desk's own file kept for want of better did not)."""
    if previous is None:
        return {}
    last_good = dict(previous.sources)
    for item in previous.refused:
        if item.using == NOTHING_BETTER:
            last_good.pop(item.problem.file, None)
    return last_good


def _refusals(
    failures: dict[str, TemplateProblem], usings: dict[str, str], sources: dict[str, tuple[str, str]]
) -> list[_Refused]:
    """Each refused file with what renders in its place, said as render_with will do it, once every file's
    fate is known (the sibling may be refused too)."""
    refused: list[_Refused] = []
    for file, using in usings.items():
        name, _, part = file.partition(".")
        if using == PACKAGE_DEFAULT and part == "txt.j2" and f"{name}.html.j2" in sources:
            using = FROM_OWN_HTML
        elif using == PACKAGE_DEFAULT and part == "html.j2" and f"{name}.txt.j2" in sources:
            using = NO_HTML
        refused.append(_Refused(failures[file], using))
    return refused


def desk_override_dir(template_root: Path, desk_name: str) -> Path:
    return template_root / desk_name


def desk_dirs(template_root: Path) -> list[str]:
    """The desks that have a directory of overrides (by name)."""
    try:
        return sorted(entry.name for entry in os.scandir(template_root) if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []
