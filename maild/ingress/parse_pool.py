"""The parse processes: a pool of fresh interpreters that turn spooled bytes into ParsedMail
(maild.mail.mailparse.parse_file) beside the process that writes, so parsing never holds its GIL.

Spawned, not forked: the daemon has threads (a fork copies their locks mid-use) and open database
connections. Each process dies with its parent (Linux's parent-death signal): a `maild serve` killed with
SIGKILL leaves no parse process behind. Importing this module costs only the standard library."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1


def start_parse_pool(processes: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start_parse_process, initargs=(os.getpid(),)
    )


def die_with_parent(parent: int) -> bool:
    """First thing in a spawned process: be killed when the process that started it (pid `parent`) dies.
    False when it died already (the caller exits)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own shutdown is all there is
        return True
    return os.getppid() == parent


def _start_parse_process(parent: int) -> None:
    if not die_with_parent(parent):
        os._exit(1)
    import maild.mail.mailparse  # noqa: F401  (loaded once here, not on the first mail)
