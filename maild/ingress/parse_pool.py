"""The parse processes: a pool of fresh interpreters that turn spooled bytes into ParsedMail
(maild.mail.mailparse.parse_file) beside the process that writes, so parsing never holds its GIL.

Spawned, not forked: the daemon has threads (a fork copies their locks mid-use) and open database
connections. Each process dies with its parent (Linux's parent-death signal): a `maild serve` killed with
SIGKILL leaves no parse process behind. Importing this module costs only the standard library."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maild.mail.mailparse import ParseOutcome

PR_SET_PDEATHSIG = 1
# After parsing a mail this large, the process hands the parser's freed memory back to the system: the
# standard library's parser takes ~8× a mail's size, and glibc keeps what was freed, so each parse process
# stayed at ~250 MB after one 25 MB mail (bench/memory_large_mails.py).
TRIM_AFTER_BYTES = 4 * 1024 * 1024


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


def parse_spooled(path: str, mail_from: str, size: int) -> ParseOutcome | None:
    """What a parse process runs for one spooled mail (maild.mail.mailparse.parse_file)."""
    from maild.mail.mailparse import parse_file

    outcome = parse_file(path, mail_from)
    if size > TRIM_AFTER_BYTES:
        release_memory()
    return outcome


def release_memory() -> None:
    """Hand what Python freed back to the system (after a large mail: glibc would keep it)."""
    gc.collect()  # a parsed message tree has reference cycles
    with suppress(OSError, AttributeError):  # not glibc: what is freed stays with the process
        ctypes.CDLL(None).malloc_trim(0)
