"""`maild`: the daemon's entry points. Imports stay inside the commands: `maild pipe` runs once per
mail, so every module it does not need is start-up time the MTA waits for."""

from __future__ import annotations

import argparse
import sys

from maild.argparsing import OneLineErrorParser

EX_TEMPFAIL = 75


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="maild", description="maild, an email-first helpdesk daemon")
    parser.add_argument("--config", help="config file (default: $MAILD_CONFIG, else ./maild.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pipe = commands.add_parser(
        "pipe", help="read one message on stdin (MTA pipe transport); exit per sysexits"
    )
    pipe.add_argument("--recipient", help="envelope recipient (default: Delivered-To, X-Original-To, To)")
    pipe.add_argument(
        "--sender", help="envelope sender (Postfix: ${sender} with null_sender=; an empty value is <>)"
    )
    commands.add_parser("check-config", help="validate the config file and exit (0 ok, 78 invalid)")
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
        from maild.pipe import run_pipe

        # Given but empty is the null sender (a bounce); not given: unknown (the Return-Path header may say).
        mail_from = "" if args.sender is None else (args.sender or "<>")
        return run_pipe(args.config, args.recipient, mail_from=mail_from)
    if args.command == "serve":
        from maild.serve import run_serve

        return run_serve(args.config)
    if args.command == "check-config":
        from maild.config import EX_CONFIG, ConfigError, check_imap_secrets, load_config

        try:
            cfg = load_config(args.config)
            check_imap_secrets(cfg)
        except ConfigError as exc:
            print(f"maild: {exc}", file=sys.stderr)
            return EX_CONFIG
        print(f"config ok: data_dir={cfg.data_dir}")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
