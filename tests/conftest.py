"""Shared fixtures. The backend comes from MAILD_TEST_DB: unset or "sqlite" runs on SQLite; a
postgresql:// URL (a throwaway cluster started by scripts/test.sh) runs the same tests on PostgreSQL.

Every test gets a fresh, migrated database: a copy of a migrated SQLite file, or a PostgreSQL database
created from a migrated template database.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.storage.db import make_engine, make_sessionmaker
from maild.storage.migrate import upgrade

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


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if IS_POSTGRESQL:
        admin = create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
        name = f"maild_template_{os.getpid()}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        upgrade(_pg_url(name))
        yield name
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "maild.sqlite3"
        upgrade(f"sqlite:///{path}")
        yield str(path)


@pytest.fixture
def database_url(_template_db: str, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database for one test."""
    if IS_POSTGRESQL:
        admin = create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
        name = f"maild_test_{os.getpid()}_{next(_counter)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_template_db}"'))
        yield _pg_url(name)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
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
    admin = create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
    name = f"maild_empty_{os.getpid()}_{next(_counter)}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield _pg_url(name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
    program: str, *args: str, config: Path | None = None, stdin: bytes | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `maild` or `maildctl` as a real subprocess, the way an MTA or an admin would."""
    argv = [str(BIN / program)]
    if config is not None:
        argv += ["--config", str(config)]
    argv += list(args)
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, timeout=120, env={**os.environ, **(env or {})}
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
