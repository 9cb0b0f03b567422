"""Running `maildctl` the way an admin does, and what its output must look like."""

from __future__ import annotations

from pathlib import Path
from subprocess import CompletedProcess

from tests.conftest import run_cli


def ctl(
    config_file: Path, *args: str, stdin: bytes | None = None, subprocess: bool = False
) -> CompletedProcess[str]:
    """maildctl in this test process (see run_cli); `subprocess=True`: the installed console script."""
    return run_cli("maildctl", *args, config=config_file, stdin=stdin, subprocess=subprocess)


def ok(proc: CompletedProcess[str]) -> str:
    """A success: exit 0, no traceback; the standard output."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def one_line_error(proc: CompletedProcess[str]) -> str:
    """A refusal: exit 1, nothing on stdout, exactly one `maildctl: …` line on stderr, never a traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("maildctl: "), line
    return line
