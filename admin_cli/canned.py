"""maildctl canned add|list|show|remove: prepared answers agents insert with `#canned NAME`.

A canned reply belongs to one desk (--desk) or to every desk (--all-desks); where both exist under one
name, the desk's own wins for that desk (maild.tickets.canned.find_canned)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maild.admin_cli.arguments import add_list, command_group
from maild.admin_cli.common import App, UserError, find_desk, iso, print_json, print_table
from maild.storage.models import CannedReply, Desk
from maild.tickets import canned_ops
from maild.tickets.canned import CANNED_NAME

ACTOR = "maildctl"


def register(commands: Any) -> None:
    sub = command_group(commands, "canned", "canned replies agents insert with #canned NAME")
    add = sub.add_parser("add", help="add a canned reply, or replace the body of an existing one")
    add.add_argument("name", metavar="NAME")
    _scope_arguments(add)
    add.add_argument("--file", help="the body (UTF-8 text); default: standard input")
    add.set_defaults(handler=add_canned)
    add_list(
        sub,
        "list canned replies",
        "only those this desk can use (its own and the all-desks ones)",
        list_canned,
    )
    show = sub.add_parser("show", help="show one canned reply")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--desk", help="as this desk sees it (its own wins over an all-desks one)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_canned)
    remove = sub.add_parser("remove", help="remove a canned reply")
    remove.add_argument("name", metavar="NAME")
    _scope_arguments(remove)
    remove.set_defaults(handler=remove_canned)


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    # Not an argparse mutually exclusive group: its complaint is a usage block and exit 2, ours one line.
    parser.add_argument("--desk", help="the desk the canned reply belongs to")
    parser.add_argument("--all-desks", action="store_true", help="a canned reply offered on every desk")


def _scope(session: Session, args: argparse.Namespace) -> Desk | None:
    """The desk of --desk, or None for --all-desks; exactly one of them must be given."""
    if bool(args.desk) == bool(args.all_desks):
        raise UserError("give either --desk DESK or --all-desks")
    return find_desk(session, args.desk) if args.desk else None


def _valid_name(name: str) -> str:
    if not CANNED_NAME.fullmatch(name):
        raise UserError(f"invalid canned reply name {name!r}: use 1-100 letters, digits and . _ -")
    return name


def _read_body(path: str | None) -> str:
    try:
        raw = Path(path).read_bytes() if path is not None else sys.stdin.buffer.read()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path or 'standard input'} is not UTF-8 text") from None
    # Stored with \n line ends and without surrounding blank lines: it is inserted into a reply.
    body = text.replace("\r\n", "\n").lstrip("\n").rstrip()
    if not body:
        raise UserError("the canned reply's body is empty")
    return body


def _label(desk: Desk | None) -> str:
    return f"desk {desk.name}" if desk else "all desks"


def canned_json(reply: CannedReply, desk_name: str | None, *, body: bool = False) -> dict[str, Any]:
    first_line = reply.body.split("\n", 1)[0]
    data: dict[str, Any] = {
        "name": reply.name,
        "desk": desk_name,
        "size": len(reply.body),
        "first_line": first_line,
        "created_at": iso(reply.created_at),
        "updated_at": iso(reply.updated_at),
    }
    if body:
        data["body"] = reply.body
    return data


def add_canned(app: App, args: argparse.Namespace) -> int:
    name = _valid_name(args.name)
    with app.session() as session:
        desk = _scope(session, args)  # the scope is checked before waiting on stdin
    body = _read_body(args.file)
    try:
        with app.session() as session:
            desk = _scope(session, args)
            action = canned_ops.save_reply(session, desk, name, body, actor=ACTOR)
    except IntegrityError:  # another maildctl added the same name for this desk meanwhile
        raise UserError(f"canned reply {name!r} was added meanwhile: run the command again") from None
    print(f"canned reply {name} ({_label(desk)}) {action}")
    return 0


def list_canned(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        query = select(CannedReply, Desk.name).outerjoin(Desk, CannedReply.desk_id == Desk.id)
        if args.desk:
            desk = find_desk(session, args.desk)
            query = query.where((CannedReply.desk_id == desk.id) | CannedReply.desk_id.is_(None))
        # All-desks ones first under a name, then by desk: the order find_canned's choice reads naturally.
        rows = session.execute(query).all()
        entries = sorted(
            (canned_json(reply, desk_name) for reply, desk_name in rows),
            key=lambda e: (e["name"], e["desk"] is not None, e["desk"] or ""),
        )
    if args.json:
        print_json(entries)
    else:
        print_table(
            ["NAME", "DESK", "SIZE", "UPDATED", "FIRST LINE"],
            [
                [e["name"], e["desk"] or "(all desks)", e["size"], e["updated_at"], e["first_line"][:60]]
                for e in entries
            ],
        )
    return 0


def show_canned(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        if args.desk:
            desk = find_desk(session, args.desk)
            reply = canned_ops.find_reply(session, args.name, desk) or canned_ops.find_reply(
                session, args.name, None
            )
        else:
            reply = canned_ops.find_reply(session, args.name, None)
            if reply is None:
                # No all-desks one: a single desk's is unambiguous, several need --desk.
                rows = session.scalars(select(CannedReply).where(CannedReply.name == args.name)).all()
                if len(rows) > 1:
                    names = sorted(session.get_one(Desk, row.desk_id).name for row in rows)
                    raise UserError(
                        f"canned reply {args.name!r} exists for desks {', '.join(names)}: give --desk"
                    )
                reply = rows[0] if rows else None
        if reply is None:
            raise UserError(f"no canned reply {args.name!r}: see 'maildctl canned list'")
        desk_name = session.get_one(Desk, reply.desk_id).name if reply.desk_id is not None else None
        data = canned_json(reply, desk_name, body=True)
    if args.json:
        print_json(data)
    else:
        print(f"name:    {data['name']}")
        print(f"desk:    {data['desk'] or '(all desks)'}")
        print(f"updated: {data['updated_at']}")
        print()
        print(data["body"])
    return 0


def remove_canned(app: App, args: argparse.Namespace) -> int:
    with app.session() as session:
        desk = _scope(session, args)
        reply = canned_ops.find_reply(session, args.name, desk)
        if reply is None:
            raise UserError(f"no canned reply {args.name!r} for {_label(desk)}: see 'maildctl canned list'")
        canned_ops.remove_reply(session, desk, reply, actor=ACTOR)
    print(f"canned reply {args.name} ({_label(desk)}) removed")
    return 0
