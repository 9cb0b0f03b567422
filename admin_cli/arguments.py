"""argparse shapes several maildctl command groups share, so each is spelt once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[..., int]


def add_list(sub: Any, help_text: str, desk_help: str, handler: Handler) -> argparse.ArgumentParser:
    """`list [--desk DESK] [--json]`."""
    parser: argparse.ArgumentParser = sub.add_parser("list", help=help_text)
    parser.add_argument("--desk", help=desk_help)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=handler)
    return parser


def add_desk_item(
    sub: Any, action: str, help_text: str, handler: Handler, description: str | None = None
) -> argparse.ArgumentParser:
    """`ACTION DESK NAME`: a command on one named thing of a desk (a status, category, rule)."""
    extra = {"description": description} if description is not None else {}
    parser: argparse.ArgumentParser = sub.add_parser(action, help=help_text, **extra)
    parser.add_argument("desk", metavar="DESK")
    parser.add_argument("name", metavar="NAME")
    parser.set_defaults(handler=handler)
    return parser


def add_show_by_id(sub: Any, help_text: str, raw_help: str, handler: Handler) -> argparse.ArgumentParser:
    """`show ID [--json] [--raw]`: one row of a queue, or its mail itself."""
    parser: argparse.ArgumentParser = sub.add_parser("show", help=help_text)
    parser.add_argument("id", type=int, metavar="ID")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--raw", action="store_true", help=raw_help)
    parser.set_defaults(handler=handler)
    return parser


def command_group(commands: Any, name: str, help_text: str) -> Any:
    """`maildctl NAME ACTION …`: a command with actions; returns the actions' subparsers."""
    group = commands.add_parser(name, help=help_text)
    return group.add_subparsers(dest="action", required=True, metavar="ACTION")
