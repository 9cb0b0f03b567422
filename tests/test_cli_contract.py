"""The contract every maildctl command keeps (issue 7): `--help` works, a command that lists or shows has
`--json`, a wrong command line is one line (exit 2), and a wrong ticket number, desk, status, agent or
priority is one line naming it (exit 1). Walks the real argument parser, so a command added later is held
to it too."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.admin_cli.main import _parser, main
from maild.config import Config
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_agent, make_desk

# Leaves whose name says they list or show something.
_LISTS_OR_SHOWS = ("list", "show", "log", "report", "audit")


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
        return
    for name, child in subparsers[0].choices.items():
        yield from _leaves(child, (*path, name))


LEAVES = sorted(_leaves(_parser()), key=lambda leaf: leaf[0])


def test_the_walk_finds_the_commands() -> None:
    paths = {path for path, _ in LEAVES}
    for expected in [
        ("ticket", "merge"),
        ("ticket", "split"),
        ("report",),
        ("escalation", "add"),
        ("import", "mbox"),
        ("audit",),
    ]:
        assert expected in paths


@pytest.mark.parametrize("path", [path for path, _ in LEAVES], ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: maildctl {' '.join(path)}")


@pytest.mark.parametrize(
    "path",
    [path for path, _ in LEAVES if path[-1] in _LISTS_OR_SHOWS],
    ids=" ".join,
)
def test_commands_that_list_or_show_have_json(path: tuple[str, ...]) -> None:
    parser = dict(LEAVES)[path]
    assert any("--json" in action.option_strings for action in parser._actions), f"maildctl {' '.join(path)}"


@pytest.mark.parametrize("path", [path for path, _ in LEAVES], ids=" ".join)
def test_a_wrong_command_line_is_one_line(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--no-such-option"])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("maildctl") and line.endswith("--help'"), line
    assert captured.out == ""


# --- a wrong ticket number, desk, status, agent or priority: one line naming it ----------------------

BOB = "bob.agent@example.com"
WRONG = {
    "number": "NOPE-99-1",
    "desk": "nosuchdesk",
    "status": "nosuchstatus",
    "agent": "nobody@example.com",
    "priority": "nosuchpriority",
}
KINDS = {
    "number": "number",
    "numbers": "number",
    "desk": "desk",
    "status": "status",
    "agent": "agent",
    "priority": "priority",
    "set_status": "status",
    "set_priority": "priority",
    "set_desk": "desk",
}


def _samples(numbers: list[str], mbox: Path) -> dict[str, Any]:
    """A valid value for every argument, by its dest: with one of them wrong, that is the only mistake."""
    return {
        "number": numbers[0],
        "numbers": numbers,
        "desk": "support",
        "name": "billing",
        "email": "new.person@example.com",
        "agent": [BOB],
        "status": "waiting",
        "priority": "high",
        "tag": "vip",
        "change": "add",
        "messages": "1",
        "after_hours": "4",
        "path": str(mbox),
        "address": "new-desk@example.com",
        "pattern": "NEW-{{nr}}",
    }


# Where the shared samples are not enough for a command to get as far as looking its arguments up.
SAMPLES_OF: dict[tuple[str, ...], dict[str, Any]] = {
    ("agent", "set"): {"email": BOB},
    ("category", "add"): {"name": "leads"},
    ("ticket", "open"): {"to": "alice@customer.example", "subject": "Hello"},
    ("webhook", "add"): {"url": "http://127.0.0.1:9/hook"},
    ("rule", "add"): {"on": "ticket created"},
    ("rule", "move"): {"to": "1"},
}
EXTRA_ARGS: dict[tuple[str, ...], list[str]] = {
    ("category", "agents"): ["--add", BOB],
    ("escalation", "add"): ["--notify-agents"],
    ("escalation", "set"): ["--active"],
    ("rule", "add"): ["--then", "tag x"],
}


def _cases() -> Iterator[tuple[tuple[str, ...], str, bool]]:
    """(command, kind of argument, whether it is positional or a required option) for every command that
    takes a ticket number, desk, status, agent or priority."""
    for path, parser in LEAVES:
        for action in parser._actions:
            kind = KINDS.get(action.dest)
            if kind is None or isinstance(action, argparse._HelpAction):
                continue
            yield path, action.dest, not action.option_strings


CASES = sorted(set(_cases()))


def _argv(parser: argparse.ArgumentParser, samples: dict[str, Any], wrong_dest: str) -> list[str]:
    argv: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.dest == wrong_dest:
            value: Any = WRONG[KINDS[wrong_dest]]
            if wrong_dest == "numbers":
                value = [samples["number"], value]
        elif action.required or not action.option_strings:
            value = samples[action.dest]
        else:
            continue
        values = value if isinstance(value, list) else [value]
        argv += [action.option_strings[0], *values] if action.option_strings else values
    return argv


@pytest.mark.parametrize(
    ("path", "dest", "positional"), CASES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else str(v)
)
def test_a_wrong_number_desk_status_agent_or_priority_is_one_line(
    path: tuple[str, ...],
    dest: str,
    positional: bool,
    config_file: Path,
    cfg: Config,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    make_agent(session_factory, BOB, "Bob", ["support"])
    numbers = []
    for n in (1, 2):
        result = deliver(session_factory, cfg, mail(message_id=f"<contract-{n}@customer.example>"), SUPPORT)
        numbers.append(result.ticket_number)
    assert main(["--config", str(config_file), "category", "add", "support", "billing"]) == 0
    mbox = tmp_path / "backlog.mbox"
    mbox.write_bytes(b"")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a reply\n")))
    capsys.readouterr()

    samples = _samples(numbers, mbox) | SAMPLES_OF.get(path, {})
    argv = [*path, *_argv(dict(LEAVES)[path], samples, dest), *EXTRA_ARGS.get(path, [])]
    code = main(["--config", str(config_file), *argv])
    captured = capsys.readouterr()
    assert code == 1, (argv, code, captured.out, captured.err)
    [line] = captured.err.splitlines()
    assert line.startswith("maildctl") and WRONG[KINDS[dest]] in line, (argv, line)
    assert captured.out == "" and "Traceback" not in captured.err
