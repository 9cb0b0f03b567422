"""maildctl template check|install|preview: a desk's mail templates (overrides of the package's, in
`<data_dir>/templates/<desk>/`), checked as the daemon checks them before it uses them
(maild.outbound.templating).

`check` runs the daemon's validation on what is on disk now: what it would refuse (and replace by the last
good version or the package default) and files it never uses. `install` copies a package template into the
desk's directory for editing. `preview` renders a template with sample variables the way the daemon does."""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maild.admin_cli.arguments import command_group
from maild.admin_cli.common import App, UserError, print_json
from maild.outbound.templating import (
    LAST_GOOD,
    NOTHING_BETTER,
    PARTS,
    TEMPLATE_FILE,
    DeskTemplates,
    check_templates,
    desk_dirs,
    desk_override_dir,
    desk_templates,
    package_names,
    render,
    sample_variables,
    typo_of,
)
from maild.storage.models import Desk
from maild.templates import DEFAULT_DIR

# Mail that belongs to no ticket (maild.outbound.outgoing.queue_desk_mail): its subject gets no [NUMBER] tag.
DESK_MAIL_TEMPLATES = frozenset(
    {"replies_only_refusal", "web_sign_in", "web_confirm_address", "desk_command_answer"}
)
NO_DESK = "no desk of this name: these templates are never used (renamed or removed desk?)"


def register(commands: Any) -> None:
    sub = command_group(commands, "template", "desk mail templates: check, install, preview")
    check = sub.add_parser(
        "check",
        help="validate the desks' template overrides as the daemon does (exit 1 and one line per problem)",
    )
    check.add_argument("desk", nargs="?", metavar="DESK", help="only this desk (default: every desk)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=check_command)
    install = sub.add_parser(
        "install", help="copy a package template into the desk's override directory, for editing"
    )
    install.add_argument("desk", metavar="DESK")
    install.add_argument("name", metavar="NAME", help="the template, e.g. ticket_created")
    install.add_argument("--force", action="store_true", help="overwrite the desk's files of that name")
    install.set_defaults(handler=install_command)
    preview = sub.add_parser(
        "preview", help="render a desk's template with sample variables, as the daemon would send it"
    )
    preview.add_argument("desk", metavar="DESK")
    preview.add_argument("name", metavar="NAME", help="the template, e.g. ticket_created")
    preview.add_argument("--sparse", action="store_true", help="leave the optional variables empty")
    preview.set_defaults(handler=preview_command)


def _desk_names(app: App) -> list[str]:
    with app.session() as session:
        return list(session.scalars(select(Desk.name).order_by(Desk.name)))


def _require_desk(app: App, name: str) -> None:
    if name not in _desk_names(app):
        raise UserError(f"no desk named {name!r}: see 'maildctl desk list'")


def _language(app: App, desk: str) -> str:
    """The desk's customers' language: a preview renders as the customer would read it."""
    with app.session() as session:
        return session.scalars(select(Desk.language).where(Desk.name == desk)).one()


def _unknown_name(name: str) -> UserError:
    return UserError(f"unknown template {name!r}: use one of {', '.join(sorted(package_names()))}")


# --- check ------------------------------------------------------------------------------------------


def check_command(app: App, args: argparse.Namespace) -> int:
    root = app.cfg.template_dir
    known = _desk_names(app)
    if args.desk is not None and args.desk not in known:
        raise UserError(f"no desk named {args.desk!r}: see 'maildctl desk list'")
    problems = [
        {"desk": p.desk, "file": p.file, "line": p.line, "error": p.error, "text": str(p)}
        for p in check_templates(root, args.desk)
        if p.desk in known  # a directory of no desk is one problem below, not one per file
    ]
    # A directory that names no desk (a typo, a renamed desk) is never read: say so, or it looks applied.
    for name in desk_dirs(root) if args.desk is None else []:
        if name not in known:
            problems.append({"desk": name, "file": None, "line": None, "error": NO_DESK, "text": ""})
    for problem in problems:
        problem["text"] = problem["text"] or f"{problem['desk']}: {problem['error']}"
    checked = [args.desk] if args.desk is not None else [d for d in desk_dirs(root) if d in known]
    if args.json:
        print_json({"ok": not problems, "checked": checked, "problems": problems})
    elif problems:
        for problem in problems:
            print(problem["text"])
    else:
        what = ", ".join(checked) if checked else "no desk has overrides"
        print(f"templates ok ({what})")
    return 1 if problems else 0


# --- install ----------------------------------------------------------------------------------------


def _write_atomically(path: Path, data: bytes) -> None:
    """A running daemon may list the directory at any moment: it must never see half a file."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"  # a dot file: the daemon skips it
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def install_command(app: App, args: argparse.Namespace) -> int:
    _require_desk(app, args.desk)  # the first argument is the first one judged
    if args.name not in package_names():
        raise _unknown_name(args.name)
    target = desk_override_dir(app.cfg.template_dir, args.desk)
    files = [f"{args.name}.{part}.j2" for part in PARTS if (DEFAULT_DIR / f"{args.name}.{part}.j2").is_file()]
    existing = [file for file in files if (target / file).exists()]
    if existing and not args.force:
        raise UserError(
            f"{', '.join(existing)} already in {target}: edit it there, or give --force to overwrite it with "
            "the package default"
        )
    try:
        target.mkdir(parents=True, exist_ok=True)
        for file in files:
            _write_atomically(target / file, (DEFAULT_DIR / file).read_bytes())
    except OSError as exc:
        raise UserError(f"cannot write to {target}: {exc.strerror or exc}") from None
    print(
        f"installed {', '.join(files)} into {target}: edit them there; "
        f"'maildctl template check {args.desk}' validates them (a running maild serve does too, with its "
        "next mail, and keeps the last good version of a broken file)"
    )
    return 0


# --- preview ----------------------------------------------------------------------------------------


def _is_own_template(template_root: Path, desk: str, name: str) -> bool:
    """A desk's own template (an escalation rule's reminder): its subject is in the desk's directory."""
    return (
        TEMPLATE_FILE.fullmatch(f"{name}.subject.j2") is not None
        and (desk_override_dir(template_root, desk) / f"{name}.subject.j2").is_file()
        and typo_of(name, package_names()) is None
    )


def _origin(templates: DeskTemplates, file: str) -> str:
    """Where the daemon takes `file` from for this desk, in words."""
    refused = {item.problem.file: item.using for item in templates.refused}
    using = refused.get(file)
    if using == LAST_GOOD:
        return "the desk's last good version (its file is refused)"
    if using == NOTHING_BETTER:
        return "the desk's file (refused, with nothing to use instead)"
    if file in templates.sources:
        return "the desk's override"
    if using is not None:  # PACKAGE_DEFAULT (the other stand-ins render no file of this name)
        return "the package default (the desk's file is refused)"
    return "the package default"


def preview_command(app: App, args: argparse.Namespace) -> int:
    _require_desk(app, args.desk)
    root = app.cfg.template_dir
    if args.name not in package_names() and not _is_own_template(root, args.desk, args.name):
        raise _unknown_name(args.name)
    # The daemon's own path: the validated snapshot (refusals logged on stderr), then render.
    templates = desk_templates(root, args.desk)
    variables = {**sample_variables(args.name, sparse=args.sparse), "desk_name": args.desk}
    try:
        rendered = render(root, args.desk, args.name, variables, _language(app, args.desk))
    except Exception as exc:  # what the daemon would fail with: the mail would not go out
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise UserError(f"{args.desk}'s {args.name} cannot be rendered: {text}") from None
    subject = rendered.subject
    tag = f"[{variables['ticket_number']}]" if "ticket_number" in variables else ""
    added = ""
    if args.name not in DESK_MAIL_TEMPLATES and tag and tag not in subject:
        # As maild.outbound.outgoing.queue_mail does: threading by subject needs the tag.
        subject, added = f"{tag} {subject}".strip(), " (maild adds the number tag)"
    own_text = f"{args.name}.txt.j2" in templates.sources
    own_html = f"{args.name}.html.j2" in templates.sources
    text_from = (
        "converted from the HTML part"
        if own_html and not own_text
        else _origin(templates, f"{args.name}.txt.j2")
    )
    print(f"Subject: {subject}{added}")
    print(f"Subject from: {_origin(templates, f'{args.name}.subject.j2')}")
    print(f"Text from: {text_from}")
    if rendered.html is None:
        print("HTML part: none (text only)")
    else:
        html_from = _origin(templates, f"{args.name}.html.j2")
        print(f"HTML part: yes, {len(rendered.html)} characters, from {html_from}")
    print()
    print(rendered.text, end="" if rendered.text.endswith("\n") else "\n")
    return 0
