"""An uninitialised or outdated database is a configuration problem (exit 78, "run 'maildctl init'"), never
a healthy-looking daemon that fails every mail, and nothing but `maildctl init` creates a database."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from maild.storage.migrate import alembic_config, upgrade
from maild.storage.schema import CURRENT, HEAD, MISSING, OLD, REVISIONS, check_database
from tests.conftest import IS_POSTGRESQL, run_cli
from tests.pipeline.helpers import mail as make_mail

EX_CONFIG, EX_TEMPFAIL = 78, 75


def test_the_schema_modules_revisions_are_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    history = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert list(REVISIONS) == history
    assert script.get_current_head() == HEAD


@pytest.fixture
def bare_config(tmp_path: Path, empty_database_url: str) -> Path:
    from tests.daemon import free_port

    (tmp_path / "data").mkdir()
    config = tmp_path / "maild.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{empty_database_url}"\n'
        f'[listen]\nlmtp = "127.0.0.1:{free_port()}"\n'
    )
    return config


def _sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "maild.sqlite3"


def test_check_config_serve_and_pipe_say_run_init_and_create_nothing(
    tmp_path: Path, bare_config: Path, empty_database_url: str
) -> None:
    assert check_database(empty_database_url, 1000).state == MISSING
    for args in (("check-config",), ("serve",), ("pipe", "--recipient", "support@example.com")):
        proc = run_cli("maild", *args, config=bare_config, stdin=make_mail())
        assert proc.returncode == EX_CONFIG, (args, proc.stdout, proc.stderr)
        assert "run 'maildctl init'" in proc.stderr, args
        assert "Traceback" not in proc.stderr
        assert not _sqlite_file(tmp_path).exists(), f"maild {args[0]} created the database file"
    assert check_database(empty_database_url, 1000).state == MISSING
    if not IS_POSTGRESQL:
        # SQLite is checked before anything is written: nothing spooled, the MTA keeps the mail. (On
        # PostgreSQL the pipe spools first and asks the database only when no daemon takes the mail.)
        spool_dir = tmp_path / "data" / "spool"
        assert not spool_dir.exists() or not any(p.is_file() for p in spool_dir.rglob("*"))

    assert run_cli("maildctl", "init", config=bare_config).returncode == 0
    assert check_database(empty_database_url, 1000).state == CURRENT
    proc = run_cli("maild", "check-config", config=bare_config)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config ok")


def test_an_older_schema_asks_for_init_to_upgrade_it(bare_config: Path, empty_database_url: str) -> None:
    upgrade(empty_database_url, REVISIONS[-2])
    schema = check_database(empty_database_url, 1000)
    assert (schema.state, schema.revision) == (OLD, REVISIONS[-2])
    proc = run_cli("maild", "check-config", config=bare_config)
    assert proc.returncode == EX_CONFIG
    assert (
        f"revision {REVISIONS[-2]}, this maild needs {HEAD}: run 'maildctl init' to upgrade it" in proc.stderr
    )
    proc = run_cli(
        "maild", "pipe", "--recipient", "support@example.com", config=bare_config, stdin=make_mail()
    )
    assert proc.returncode == EX_CONFIG, proc.stderr
    assert run_cli("maildctl", "init", config=bare_config).returncode == 0
    assert check_database(empty_database_url, 1000).state == CURRENT


@pytest.mark.skipif(IS_POSTGRESQL, reason="an unreachable SQLite file: a directory in its place")
def test_an_unreadable_sqlite_database_is_a_retry_for_the_pipe(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "db-is-a-dir").mkdir()
    config = tmp_path / "maild.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "sqlite:///{tmp_path / "db-is-a-dir"}"\n'
    )
    proc = run_cli("maild", "pipe", "--recipient", "support@example.com", config=config, stdin=make_mail())
    assert proc.returncode == EX_TEMPFAIL, proc.stderr
    # check-config does not keep a daemon from starting while its database is away (intake says 451).
    proc = run_cli("maild", "check-config", config=config)
    assert proc.returncode == 0
    assert "the schema was not checked" in proc.stderr


@pytest.mark.postgresql_only
@pytest.mark.skipif(not IS_POSTGRESQL, reason="an unreachable server is PostgreSQL's")
def test_an_unreachable_postgresql_is_a_retry_for_the_pipe(tmp_path: Path) -> None:
    from tests.daemon import free_port

    (tmp_path / "data").mkdir()
    config = tmp_path / "maild.toml"
    url = f"postgresql://maild@127.0.0.1:{free_port()}/maild"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{url}"\n')
    proc = run_cli("maild", "pipe", "--recipient", "support@example.com", config=config, stdin=make_mail())
    assert proc.returncode == EX_TEMPFAIL, proc.stderr


@pytest.mark.parametrize("program", ["maild", "maildctl"])
def test_version(program: str) -> None:
    from importlib.metadata import version

    proc = run_cli(program, "--version", subprocess=True)  # the installed console script itself
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{program} {version('maild')}"
