"""The contract every maildctl command keeps (issue 7): `--help` works, and a command that lists or shows
has `--json`. Walks the real argument parser, so a command added later is held to it too."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from admin_cli.main import _parser, main

# Leaves whose name says they list or show something.
_LISTS_OR_SHOWS = ("list", "show", "log", "report")


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
