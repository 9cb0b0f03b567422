"""Shared fixtures. The backend comes from MAILD_TEST_DB: unset or "sqlite" runs on SQLite; a
postgresql:// URL (a throwaway cluster started by scripts/test.sh) runs the same tests on PostgreSQL.

Every test gets a fresh, migrated database: a copy of a migrated SQLite file, or a PostgreSQL database
created from a migrated template database.

On PostgreSQL only the tests that get a database run (see `pytest_collection_modifyitems`): the others
(parsing, templates, config files, their own SQLite files) do the same on both backends, so the SQLite run
covers them.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import shutil
import subprocess as _subprocess
import sys
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.storage.db import make_engine, make_sessionmaker
from maild.storage.migrate import upgrade


def _keep_compiled_bytecode() -> None:
    """Let Python write its bytecode caches (`__pycache__/`, ignored by git) even where the environment
    says PYTHONDONTWRITEBYTECODE (the development machines do): otherwise every process the tests start
    (`maild serve`, its pipeline and parse processes, `maild pipe`, `maild work`, maildctl) compiles
    maild's modules again, and every pytest worker rewrites every test module again. Measured: the daemon
    tests take 8-13 % less CPU, collecting the suite 2 s of CPU instead of 6 per worker. Done here, while
    pytest starts and before it starts its workers, so they and everything they run inherit it."""
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        sys.dont_write_bytecode = False


_keep_compiled_bytecode()

BACKEND_URL = os.environ.get("MAILD_TEST_DB", "sqlite")
IS_POSTGRESQL = BACKEND_URL.startswith("postgresql")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_counter = itertools.count()


def pytest_report_header() -> str:
    return f"maild database backend: {'postgresql' if IS_POSTGRESQL else 'sqlite'}"


def _pg_url(database: str) -> str:
    url = make_url(BACKEND_URL).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


# The fixtures that hand a test a database of the backend under test; `_template_db` is the one under both.
DATABASE_FIXTURES = frozenset({"_template_db", "database_url", "empty_database_url"})


# Modules holding the longest tests (a minute or more each on a loaded machine; `--durations`), longest
# first: run before the rest, so that no worker is still in one of them long after the others ran out.
RUN_FIRST = ("tests/test_kill_burst.py", "tests/test_install_doc.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, leave out the tests that get no database: what they check (parsing, templates, config
    files, command lines, a SQLite file of their own) cannot differ between the backends, and the SQLite run
    has them. A test that reaches PostgreSQL some other way is marked `postgresql_only` or `both_backends`.
    Then the RUN_FIRST modules go first (whole modules, each in its own order): pytest-xdist hands out
    tests in this order. Every worker collects the same list, as pytest-xdist requires."""
    if IS_POSTGRESQL:
        kept, left_out = [], []
        for item in items:
            (kept if gets_a_database(item) else left_out).append(item)
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = kept
    items.sort(key=_run_order)  # stable: within a rank, collection order


def _run_order(item: pytest.Item) -> int:
    path = item.nodeid.split("::")[0]
    return RUN_FIRST.index(path) if path in RUN_FIRST else len(RUN_FIRST)


def gets_a_database(item: pytest.Item) -> bool:
    marked = any(item.get_closest_marker(name) for name in ("postgresql_only", "both_backends"))
    return marked or bool(DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))


def uses_database(request: pytest.FixtureRequest) -> bool:
    """Whether the test gets a database through any of its fixtures. An autouse fixture that fills the
    database asks this (and `request.getfixturevalue`s what it needs) instead of requesting a database
    itself, so the module's tests that only parse get none: no copy to make, and on PostgreSQL they are
    left to the SQLite run."""
    return "database_url" in request.fixturenames


@cache
def _admin() -> Engine:
    """One connection per worker process for creating and dropping the tests' databases, instead of a new
    engine and two new server processes per test."""
    return create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT", pool_size=1, pool_pre_ping=True)


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if IS_POSTGRESQL:
        name = f"maild_template_{os.getpid()}"
        with _admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        upgrade(_pg_url(name))
        yield name
        with _admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        _admin().dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "maild.sqlite3"
        upgrade(f"sqlite:///{path}")
        yield str(path)


@pytest.fixture
def database_url(_template_db: str, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database for one test."""
    if IS_POSTGRESQL:
        name = f"maild_test_{os.getpid()}_{next(_counter)}"
        with _admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_template_db}"'))
        yield _pg_url(name)
        with _admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        target = tmp_path / "db" / "maild.sqlite3"
        target.parent.mkdir()
        shutil.copyfile(_template_db, target)
        yield f"sqlite:///{target}"


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database without any schema: a new PostgreSQL database, or a SQLite file not yet created (in
    `tmp_path / "data"`, where maild would put it)."""
    if not IS_POSTGRESQL:
        yield f"sqlite:///{tmp_path / 'data' / 'maild.sqlite3'}"
        return
    name = f"maild_empty_{os.getpid()}_{next(_counter)}"
    with _admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield _pg_url(name)
    with _admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def config_file(data_dir: Path, database_url: str) -> Path:
    path = data_dir.parent / "maild.toml"
    path.write_text(f'data_dir = "{data_dir}"\n\n[database]\nurl = "{database_url}"\n')
    return path


@pytest.fixture
def cfg(config_file: Path) -> Config:
    return load_config(str(config_file))


@pytest.fixture
def session_factory(cfg: Config) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
    yield make_sessionmaker(engine)
    engine.dispose()


def run_cli(
    program: str,
    *args: str,
    config: Path | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    subprocess: bool = False,
) -> CompletedProcess[str]:
    """Run `maild` or `maildctl` and return what a process would have: exit code, stdout, stderr.

    `maild` (pipe, serve, check-config: what an MTA or systemd starts) is always a real subprocess.
    `maildctl` runs in this process unless `subprocess=True`: starting the interpreter and importing
    cost ~0.6 s per call, most of the suite's time. Keep `subprocess=True` where the process itself is
    the subject (exit codes on a closed pipe, `--version`, the console script, docs' commands)."""
    argv = [str(BIN / program)]
    if config is not None:
        argv += ["--config", str(config)]
    argv += list(args)
    if program == "maildctl" and not subprocess:
        return _run_in_process(argv, stdin, env or {})
    proc = _subprocess.run(
        argv, input=stdin, capture_output=True, timeout=120, env={**os.environ, **(env or {})}
    )
    return CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


# --- maildctl in this process, as if it were a fresh one ---------------------------------------------


class _Pipe(io.BytesIO):
    """The bytes a pipe would have carried: still readable after the command closed its stream."""

    def close(self) -> None:
        pass


def _run_in_process(argv: list[str], stdin: bytes | None, env: dict[str, str]) -> CompletedProcess[str]:
    from maild.admin_cli.main import main

    out, err = _Pipe(), _Pipe()
    with _environment(env), _stdio(stdin, out, err), _fresh_process_state(argv):
        code = _exit_status(main, argv[1:])
        sys.stdout.flush()  # what the interpreter does at exit
        sys.stderr.flush()
    return CompletedProcess(
        argv, code, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace")
    )


def _exit_status(main: Callable[[list[str]], int], args: list[str]) -> int:
    """The console script's `sys.exit(main())`, and the interpreter's handling of what escapes it."""
    try:
        code: object = main(args)
    except SystemExit as exc:
        code = exc.code
    except Exception:  # a crash: the traceback on stderr and exit 1, as the interpreter does
        traceback.print_exc(file=sys.stderr)
        return 1
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """`env` on top of os.environ for the call; afterwards os.environ exactly as before, also undoing
    whatever the command itself set."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


@contextmanager
def _stdio(stdin: bytes | None, out: io.BytesIO, err: io.BytesIO) -> Iterator[None]:
    """sys.stdin/stdout/stderr as a process with pipes gets them (UTF-8 text over a binary `.buffer`;
    stderr line-buffered, stdout not); stdin without input is empty."""
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8", newline="\n")
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", newline="\n")
    sys.stderr = io.TextIOWrapper(
        err, encoding="utf-8", errors="backslashreplace", newline="\n", line_buffering=True
    )
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextmanager
def _fresh_process_state(argv: list[str]) -> Iterator[None]:
    """What a new interpreter would start with, for the call; the test process's own state back after."""
    with _logging_as_at_start(), _warnings_as_at_start(), _fresh_caches(), _engines_disposed():
        saved_argv, saved_cwd = sys.argv, os.getcwd()
        sys.argv = list(argv)
        try:
            yield
        finally:
            sys.argv = saved_argv
            os.chdir(saved_cwd)


@contextmanager
def _engines_disposed() -> Iterator[None]:
    """Every engine the command connected with is disposed when it returns, as its exit would close
    them: App.close() does for its own, but not e.g. the migrations' engine of `maildctl init`, whose
    pooled connection would linger here (and on PostgreSQL hold the test's database)."""
    used: weakref.WeakSet[Engine] = weakref.WeakSet()

    def remember(connection: Connection) -> None:
        used.add(connection.engine)

    event.listen(Engine, "engine_connect", remember)
    try:
        yield
    finally:
        event.remove(Engine, "engine_connect", remember)
        for engine in list(used):
            engine.dispose()


@contextmanager
def _logging_as_at_start() -> Iterator[None]:
    """A fresh maildctl configures no logging: warnings and errors reach stderr through logging's
    last-resort handler, the message alone, and structlog prints with its defaults. Here the root logger
    carries pytest's capture handlers, and a test may have run `maild.logs.configure()` (JSON on a stream
    it chose): both set aside so the command's log lines land on its own stderr."""
    import structlog

    import maild.logs

    root = logging.getLogger()
    saved_handlers, saved_level, saved_json = root.handlers[:], root.level, maild.logs._configured
    saved_structlog = structlog.get_config() if structlog.is_configured() else None
    handler = logging.StreamHandler(sys.stderr)  # the captured stderr (_stdio is entered before)
    handler.setLevel(logging.WARNING)
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    maild.logs._configured = False
    structlog.reset_defaults()
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        maild.logs._configured = saved_json
        if saved_structlog is not None:
            structlog.configure(**saved_structlog)
        else:
            structlog.reset_defaults()


@contextmanager
def _warnings_as_at_start() -> Iterator[None]:
    """Python's default warning filters, printed to stderr (pytest records warnings instead)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category in _DEFAULT_WARNING_FILTERS:
            warnings.filterwarnings(action, category=category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = _show_warning
        yield


_DEFAULT_WARNING_FILTERS: list[tuple[Any, type[Warning]]] = [
    ("ignore", ResourceWarning),
    ("ignore", ImportWarning),
    ("ignore", PendingDeprecationWarning),
    ("ignore", DeprecationWarning),
]


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextmanager
def _fresh_caches() -> Iterator[None]:
    """Module-level memory a new process starts without: the desks' template snapshots (whose refusals
    are logged only when loaded, i.e. by every real maildctl run), the reply-token secret read from the
    data directory, the outbound sender's per-process bookkeeping. The test process's own copies back
    afterwards."""
    from maild.mail import tokens
    from maild.outbound import sender, templating

    saved = dict(templating._loaded), set(sender._in_hand), {k: set(v) for k, v in sender._accepted.items()}
    templating._loaded.clear()
    sender._in_hand.clear()
    sender._accepted.clear()
    tokens.load_secret.cache_clear()
    try:
        yield
    finally:
        templating._loaded.clear()
        templating._loaded.update(saved[0])
        sender._in_hand.clear()
        sender._in_hand.update(saved[1])
        sender._accepted.clear()
        sender._accepted.update(saved[2])
        tokens.load_secret.cache_clear()
