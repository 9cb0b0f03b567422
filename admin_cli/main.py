"""maildctl entry point: parse, dispatch, and turn every user error into one line and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError

from maild.admin_cli import (
    agents,
    api_tokens,
    audit,
    blocks,
    canned,
    contacts,
    desks,
    escalations,
    explain,
    health,
    importing,
    outbox_commands,
    reports,
    rules,
    spool_commands,
    statuses,
    template_commands,
    tickets,
    webhooks,
)
from maild.admin_cli.common import App, UserError
from maild.argparsing import OneLineErrorParser
from maild.config import EX_CONFIG, ConfigError, load_config
from maild.ingress.cli import VersionAction

EX_TEMPFAIL = 75
EX_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell shows for a C tool whose reader went away


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="maildctl", description="administer maild")
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--config", help="config file (default: $MAILD_CONFIG, else ./maild.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="create or upgrade the database and the data directory")
    init.set_defaults(handler=run_init)
    for module in (
        desks,
        agents,
        contacts,
        tickets,
        blocks,
        outbox_commands,
        spool_commands,
        explain,
        canned,
        statuses,
        escalations,
        rules,
        importing,
        reports,
        health,
        template_commands,
        api_tokens,
        webhooks,
        audit,
    ):
        module.register(commands)
    return parser


def run_init(app: App, args: argparse.Namespace) -> int:
    from maild.outbound.maildir import ensure_maildir
    from maild.storage.migrate import upgrade

    for path in (app.cfg.data_dir, app.cfg.spool_dir, app.cfg.attachment_dir, app.cfg.template_dir):
        path.mkdir(parents=True, exist_ok=True)
    ensure_maildir(app.cfg.outgoing_maildir)
    upgrade(app.cfg.database_url)
    from maild.admin_cli.desk_addresses import refresh_desk_table

    refresh_desk_table(app)  # maild pipe's table of desk addresses (maild.ingress.desk_table)
    print(f"initialised {app.cfg.data_dir} (database at head)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    app: App | None = None
    try:
        app = App(load_config(args.config))
        if args.command != "init" and app.cfg.is_sqlite and not app.cfg.database_url.endswith(":memory:"):
            db_file = app.cfg.database_url.split("///", 1)[-1]
            if not Path(db_file).exists():
                raise UserError(f"no database at {db_file}: run 'maildctl init' first")
        code: int = args.handler(app, args)
        # Flushed here, not at exit: a reader that went away raises now, where it is caught below.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # `maildctl ticket list | head -1`: the reader has what it wanted; the rest has nowhere to go.
        _silence_stdout()
        return EX_BROKEN_PIPE
    except ConfigError as exc:
        print(f"maildctl: {exc}", file=sys.stderr)
        return EX_CONFIG
    except UserError as exc:
        print(f"maildctl: {exc}", file=sys.stderr)
        return exc.code
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        # SQLite says "no such table"; PostgreSQL's missing relation is a ProgrammingError. A missing
        # PostgreSQL *database* is an OperationalError that also says "does not exist": init cannot
        # create it, so pointing to init there sent the admin (and init itself) round in a loop.
        missing_relation = isinstance(exc, ProgrammingError) and "does not exist" in text
        no_schema = "no such table" in text or missing_relation
        if no_schema and args.command != "init":
            print("maildctl: the database has no schema yet: run 'maildctl init'", file=sys.stderr)
            return 1
        print(f"maildctl: database unavailable: {text}", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        if app is not None:
            app.close()


def _silence_stdout() -> None:
    """The Python docs' recipe for SIGPIPE: point stdout at /dev/null, so that the interpreter's flush
    at exit (of what is still buffered) does not raise BrokenPipeError a second time, as a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (stdout replaced in-process): nothing to do
        pass


if __name__ == "__main__":
    sys.exit(main())
