"""`maild`: the daemon's entry points. Imports stay inside the commands: `maild pipe` runs once per
mail, so every module it does not need is start-up time the MTA waits for."""

from __future__ import annotations

import argparse
import sys

from maild.argparsing import OneLineErrorParser
from maild.version import package_version

EX_TEMPFAIL = 75


class VersionAction(argparse.Action):
    """`--version` of `maild` and `maildctl`: the installed package's version. Looked up only when asked:
    importlib.metadata would cost every `maild pipe` its start-up time."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help="print the version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="maild", description="maild, an email-first helpdesk daemon")
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--config", help="config file (default: $MAILD_CONFIG, else ./maild.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pipe = commands.add_parser(
        "pipe", help="read one message on stdin (MTA pipe transport); exit per sysexits"
    )
    pipe.add_argument("--recipient", help="envelope recipient (default: Delivered-To, X-Original-To, To)")
    pipe.add_argument(
        "--sender", help="envelope sender (Postfix: ${sender} with null_sender=; an empty value is <>)"
    )
    work = commands.add_parser(
        "work",
        help="process the spool's received mail without listening, and exit when idle (maild pipe starts "
        "one when no maild serve runs)",
    )
    work.add_argument(
        "--exit-when-idle",
        metavar="SECONDS",
        type=float,
        required=True,
        help="exit once no mail came for this long",
    )
    work.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)  # the worker lock, from maild pipe
    commands.add_parser(
        "check-config",
        help="validate the config file and the database schema, then exit (0 ok; 78 invalid config, or "
        "the schema missing or not this maild's: run 'maildctl init')",
    )
    commands.add_parser(
        "serve", help="run the daemon: LMTP/SMTP listeners and pipeline workers; JSON log lines on stdout"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        # A mistake in the MTA's pipe command line must not bounce mail: 75 keeps it queued while the
        # admin fixes master.cf (the one-line reason is in the MTA's log).
        if exc.code == 2 and "pipe" in argv:
            return EX_TEMPFAIL
        raise
    if args.command == "pipe":
        from maild.ingress.pipe import run_pipe

        # Given but empty is the null sender (a bounce); not given: unknown (the Return-Path header may say).
        mail_from = "" if args.sender is None else (args.sender or "<>")
        return run_pipe(args.config, args.recipient, mail_from=mail_from)
    if args.command == "serve":
        from maild.ingress.serve import run_serve

        return run_serve(args.config)
    if args.command == "work":
        from maild.ingress.spool_worker import run_worker

        return run_worker(args.config, args.exit_when_idle, args.lock_fd)
    if args.command == "check-config":
        return _check_config(args.config)
    raise AssertionError(args.command)


def _check_config(config: str | None) -> int:
    from maild.config import EX_CONFIG, ConfigError, check_imap_secrets, load_config
    from maild.storage.schema import UNREACHABLE, check_database

    try:
        cfg = load_config(config)
        check_imap_secrets(cfg)
    except ConfigError as exc:
        print(f"maild: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(f"config ok: data_dir={cfg.data_dir}")
    schema = check_database(cfg.database_url, cfg.busy_timeout_ms)
    if schema.state == UNREACHABLE:
        # `maild serve` starts with the database down (intake answers 451 until it is back), so a
        # check-config before it (systemd's ExecStartPre) must not keep it from starting.
        print(f"maild: {schema.problem()}: the schema was not checked", file=sys.stderr)
        return 0
    if not schema.ready:
        print(f"maild: {schema.problem()}", file=sys.stderr)
        return EX_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
