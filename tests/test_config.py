"""The TOML configuration: embedded defaults from a one-line file, lookup order, and strict validation
that reports every mistake as one line naming the key (exit 78, EX_CONFIG) from `maild` and `maildctl`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from maild.config import EX_CONFIG, ConfigError, ImapAccount, check_imap_secrets, load_config
from tests.conftest import run_cli


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- defaults ---------------------------------------------------------------------------------------


def test_one_line_config_gives_sqlite_and_every_path_under_the_data_dir(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path / "maild.toml", 'data_dir = "/dir"\n')))

    assert cfg.data_dir == Path("/dir")
    assert cfg.database_url == "sqlite:////dir/maild.sqlite3"
    assert cfg.is_sqlite
    assert cfg.spool_dir == Path("/dir/spool")
    assert cfg.attachment_dir == Path("/dir/attachments")
    assert cfg.outgoing_maildir == Path("/dir/outgoing")
    assert cfg.template_dir == Path("/dir/templates")
    assert cfg.smarthost is None  # outgoing mail goes to the Maildir
    assert cfg.busy_timeout_ms == 15000
    assert cfg.smtp_timeout == 30.0
    assert cfg.ticket_url == ""


def test_check_config_accepts_the_one_line_config(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", f'data_dir = "{tmp_path / "dir"}"\n')
    proc = run_cli("maild", "check-config", config=path)
    # The config is fine; the database it names does not exist yet (tests/test_readiness.py).
    assert proc.stdout.strip() == f"config ok: data_dir={tmp_path / 'dir'}"
    assert proc.returncode == 78
    database = tmp_path / "dir" / "maild.sqlite3"
    assert proc.stderr == f"maild: no database at {database}: run 'maildctl init' first\n"
    assert run_cli("maildctl", "init", config=path, subprocess=True).returncode == 0
    proc = run_cli("maild", "check-config", config=path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("written", "expected"),
    [("data", "etc/data"), ("./var/../data", "etc/data"), ("../var/maild", "var/maild")],
)
def test_relative_data_dir_is_resolved_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str, expected: str
) -> None:
    path = write(tmp_path / "etc" / "maild.toml", f'data_dir = "{written}"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter

    cfg = load_config(str(path))

    assert cfg.data_dir == tmp_path / expected
    assert cfg.data_dir.is_absolute()
    assert cfg.database_url == f"sqlite:///{tmp_path / expected / 'maild.sqlite3'}"


def test_relative_data_dir_with_a_relative_config_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc" / "maild.toml", 'data_dir = "data"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config("etc/maild.toml").data_dir == tmp_path / "etc" / "data"


def test_home_relative_data_dir_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config(str(write(tmp_path / "maild.toml", 'data_dir = "~/maild"\n')))
    assert cfg.data_dir == tmp_path / "home" / "maild"


# --- database and outgoing ------------------------------------------------------------------------


def test_postgresql_url_switches_to_the_psycopg_driver(tmp_path: Path) -> None:
    path = write(
        tmp_path / "maild.toml",
        'data_dir = "/dir"\n[database]\nurl = "postgresql://maild:secret@db.internal:5432/maild"\n'
        "busy_timeout_ms = 500\n",
    )
    cfg = load_config(str(path))
    assert cfg.database_url == "postgresql+psycopg://maild:secret@db.internal:5432/maild"
    assert not cfg.is_sqlite
    assert cfg.busy_timeout_ms == 500
    assert cfg.data_dir == Path("/dir")  # files (spool, attachments) still live under the data dir
    assert cfg.spool_dir == Path("/dir/spool")


def test_explicit_driver_and_sqlite_urls_are_kept(tmp_path: Path) -> None:
    for url in ("postgresql+psycopg://u@h/db", "sqlite:////srv/other.sqlite3"):
        path = write(tmp_path / "maild.toml", f'data_dir = "/dir"\n[database]\nurl = "{url}"\n')
        assert load_config(str(path)).database_url == url


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mail.example.com:587", ("mail.example.com", 587)),
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("[::1]:2525", ("::1", 2525)),
    ],
)
def test_smarthost_host_and_port(tmp_path: Path, value: str, expected: tuple[str, int]) -> None:
    path = write(
        tmp_path / "maild.toml", f'data_dir = "/dir"\n[outgoing]\nsmarthost = "{value}"\ntimeout = 7.5\n'
    )
    cfg = load_config(str(path))
    assert cfg.smarthost == expected
    assert cfg.smtp_timeout == 7.5


def test_ticket_url(tmp_path: Path) -> None:
    path = write(
        tmp_path / "maild.toml", 'data_dir = "/dir"\nticket_url = "https://help.example.com/t/{number}"\n'
    )
    assert load_config(str(path)).ticket_url == "https://help.example.com/t/{number}"


# --- lookup order -----------------------------------------------------------------------------------


@pytest.fixture
def three_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A ./maild.toml in the working directory, one named by MAILD_CONFIG, and one for --config."""
    cwd = tmp_path / "cwd"
    paths = {
        "cwd": write(cwd / "maild.toml", 'data_dir = "/from-cwd"\n'),
        "env": write(tmp_path / "env.toml", 'data_dir = "/from-env"\n'),
        "explicit": write(tmp_path / "explicit.toml", 'data_dir = "/from-explicit"\n'),
    }
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MAILD_CONFIG", raising=False)
    return paths


def test_lookup_order_in_process(three_configs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config().data_dir == Path("/from-cwd")
    monkeypatch.setenv("MAILD_CONFIG", str(three_configs["env"]))
    assert load_config().data_dir == Path("/from-env")
    assert load_config(str(three_configs["explicit"])).data_dir == Path("/from-explicit")


def test_lookup_order_of_the_commands(three_configs: dict[str, Path]) -> None:
    env = {"MAILD_CONFIG": str(three_configs["env"])}
    # subprocesses inherit the working directory (cwd/ with its maild.toml) from the test
    assert run_cli("maild", "check-config").stdout.strip() == "config ok: data_dir=/from-cwd"
    assert run_cli("maild", "check-config", env=env).stdout.strip() == "config ok: data_dir=/from-env"
    explicit = run_cli("maild", "check-config", config=three_configs["explicit"], env=env)
    assert explicit.stdout.strip() == "config ok: data_dir=/from-explicit"


def test_no_config_anywhere_says_how_to_give_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILD_CONFIG", raising=False)
    for program in ("maild", "maildctl"):
        proc = run_cli(program, "check-config" if program == "maild" else "init")
        assert proc.returncode == EX_CONFIG
        [line] = proc.stderr.splitlines()
        assert "maild.toml not found" in line
        assert "--config" in line and "MAILD_CONFIG" in line
    assert not (tmp_path / "data").exists()


# --- invalid configurations ------------------------------------------------------------------------

INVALID: list[tuple[str, str, str]] = [
    # (case id, file content, the key the one-line error must name)
    ("missing data_dir", 'ticket_url = "https://x"\n', "data_dir"),
    ("empty data_dir", 'data_dir = "  "\n', "data_dir"),
    ("unknown top-level key", 'data_dir = "/d"\nlisten = "0.0.0.0:25"\n', "listen"),
    ("misspelt table", 'data_dir = "/d"\n[outgoin]\nsmarthost = "h:25"\n', "outgoin"),
    ("unknown nested key", 'data_dir = "/d"\n[database]\nuri = "sqlite://"\n', "database.uri"),
    ("data_dir not a string", "data_dir = 5\n", "data_dir"),
    ("data_dir a list", 'data_dir = ["/a", "/b"]\n', "data_dir"),
    ("database not a table", 'data_dir = "/d"\ndatabase = "sqlite://"\n', "database"),
    (
        "busy timeout a string",
        'data_dir = "/d"\n[database]\nbusy_timeout_ms = "5"\n',
        "database.busy_timeout_ms",
    ),
    (
        "busy timeout a bool",
        'data_dir = "/d"\n[database]\nbusy_timeout_ms = true\n',
        "database.busy_timeout_ms",
    ),
    (
        "busy timeout negative",
        'data_dir = "/d"\n[database]\nbusy_timeout_ms = -1\n',
        "database.busy_timeout_ms",
    ),
    ("smtp timeout a bool", 'data_dir = "/d"\n[outgoing]\ntimeout = true\n', "outgoing.timeout"),
    ("smtp timeout zero", 'data_dir = "/d"\n[outgoing]\ntimeout = 0\n', "outgoing.timeout"),
    ("unsupported database", 'data_dir = "/d"\n[database]\nurl = "mysql://h/db"\n', "database.url"),
    (
        "smarthost without port",
        'data_dir = "/d"\n[outgoing]\nsmarthost = "mail.example.com"\n',
        "outgoing.smarthost",
    ),
    (
        "smarthost named port",
        'data_dir = "/d"\n[outgoing]\nsmarthost = "mail.example.com:smtp"\n',
        "outgoing.smarthost",
    ),
    (
        "smarthost port 0",
        'data_dir = "/d"\n[outgoing]\nsmarthost = "mail.example.com:0"\n',
        "outgoing.smarthost",
    ),
    (
        "smarthost port too big",
        'data_dir = "/d"\n[outgoing]\nsmarthost = "mail.example.com:70000"\n',
        "outgoing.smarthost",
    ),
    ("smarthost without host", 'data_dir = "/d"\n[outgoing]\nsmarthost = ":25"\n', "outgoing.smarthost"),
    ("smarthost not a string", 'data_dir = "/d"\n[outgoing]\nsmarthost = 25\n', "outgoing.smarthost"),
    ("bad TOML", 'data_dir = "/d\n', "file"),
    ("bad TOML table", 'data_dir = "/d"\n[database\n', "file"),
]


@pytest.mark.parametrize(("text", "key"), [(t, k) for _, t, k in INVALID], ids=[c for c, _, _ in INVALID])
def test_invalid_config_raises_config_error_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "maild.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.key == key
    assert str(info.value).startswith(f"config: {key}: ")
    assert "\n" not in str(info.value)


def assert_one_line_config_error(proc: subprocess.CompletedProcess[str], program: str, key: str) -> str:
    assert proc.returncode == EX_CONFIG, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{program}: config: {key}: "), lines[0]
    assert proc.stdout == ""
    return lines[0]


@pytest.mark.parametrize(("text", "key"), [(t, k) for _, t, k in INVALID], ids=[c for c, _, _ in INVALID])
def test_invalid_config_exits_78_with_one_line_from_both_commands(
    tmp_path: Path, text: str, key: str
) -> None:
    path = write(tmp_path / "maild.toml", text)
    assert_one_line_config_error(run_cli("maild", "check-config", config=path), "maild", key)
    assert_one_line_config_error(run_cli("maildctl", "desk", "list", config=path), "maildctl", key)


def test_bad_toml_names_the_file_and_the_position(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/d"\nticket_url = \n')
    line = assert_one_line_config_error(run_cli("maild", "check-config", config=path), "maild", "file")
    assert str(path) in line
    assert "not valid TOML" in line
    assert "line 2" in line


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "maild.toml"
    path.write_bytes('# maild\ndata_dir = "/srv/données"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.key == "file"
    for program, args in (("maild", ("check-config",)), ("maildctl", ("desk", "list"))):
        line = assert_one_line_config_error(run_cli(program, *args, config=path), program, "file")
        assert str(path) in line
        assert "UTF-8" in line
        assert "line 2" in line


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/d"\n[outgoing]\nsmarthsot = "h:25"\n')
    line = assert_one_line_config_error(
        run_cli("maild", "check-config", config=path), "maild", "outgoing.smarthsot"
    )
    assert "unknown key" in line
    assert "smarthost" in line and "timeout" in line


@pytest.mark.parametrize("program", ["maild", "maildctl"])
def test_missing_config_file(tmp_path: Path, program: str) -> None:
    path = tmp_path / "nowhere" / "maild.toml"
    args = ("check-config",) if program == "maild" else ("ticket", "list")
    line = assert_one_line_config_error(run_cli(program, *args, config=path), program, "file")
    assert f"{path} not found" in line


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    line = assert_one_line_config_error(run_cli("maild", "check-config", config=tmp_path), "maild", "file")
    assert f"cannot read {tmp_path}" in line


def test_maildctl_init_with_an_invalid_config_creates_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "data"\nbogus = 1\n')
    assert_one_line_config_error(run_cli("maildctl", "init", config=path), "maildctl", "bogus")
    assert not (tmp_path / "data").exists()


# --- [listen]: maild serve ------------------------------------------------------------------------


def test_without_listen_smtp_on_loopback_2525_and_no_lmtp(tmp_path: Path) -> None:
    listen = load_config(str(write(tmp_path / "maild.toml", 'data_dir = "/dir"\n'))).listen

    assert [str(a) for a in listen.smtp] == ["127.0.0.1:2525"]
    assert listen.lmtp == ()
    assert listen.max_message_bytes == 50 * 1024 * 1024  # a 30 MB attachment in base64 is ~40.5 MB
    assert (listen.max_connections, listen.timeout, listen.workers) == (100, 300.0, 2)
    assert listen.tls_cert is None and listen.tls_key is None


def test_listen_table_with_every_key(tmp_path: Path) -> None:
    text = (
        'data_dir = "/dir"\n[listen]\nlmtp = ["127.0.0.1:2424", "unix:/run/maild/lmtp", "[::1]:2424"]\n'
        'smtp = "0.0.0.0:25"\nmax_message_bytes = 10485760\nmax_connections = 7\ntimeout = 12.5\n'
        'workers = 4\ntls_cert = "tls/cert.pem"\ntls_key = "/etc/maild/key.pem"\n'
    )
    listen = load_config(str(write(tmp_path / "etc" / "maild.toml", text))).listen

    assert [str(a) for a in listen.lmtp] == ["127.0.0.1:2424", "unix:/run/maild/lmtp", "[::1]:2424"]
    assert listen.lmtp[1].path == Path("/run/maild/lmtp")
    assert (listen.lmtp[2].host, listen.lmtp[2].port) == ("::1", 2424)
    assert [str(a) for a in listen.smtp] == ["0.0.0.0:25"]
    assert (listen.max_message_bytes, listen.max_connections, listen.timeout, listen.workers) == (
        10485760,
        7,
        12.5,
        4,
    )
    # Relative to the config file, like data_dir; the files are only read by `maild serve`.
    assert listen.tls_cert == tmp_path / "etc" / "tls" / "cert.pem"
    assert listen.tls_key == Path("/etc/maild/key.pem")


def test_naming_only_lmtp_turns_smtp_off(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/dir"\n[listen]\nlmtp = "unix:/run/maild/lmtp"\n')
    listen = load_config(str(path)).listen
    assert [str(a) for a in listen.lmtp] == ["unix:/run/maild/lmtp"]
    assert listen.smtp == ()


def test_limits_alone_keep_the_default_smtp_listener(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/dir"\n[listen]\nworkers = 1\n')
    listen = load_config(str(path)).listen
    assert [str(a) for a in listen.smtp] == ["127.0.0.1:2525"]
    assert listen.workers == 1


def test_empty_lists_listen_nowhere(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/dir"\n[listen]\nsmtp = []\nlmtp = []\n')
    listen = load_config(str(path)).listen
    assert listen.smtp == () and listen.lmtp == ()


LISTEN_INVALID: list[tuple[str, str, str]] = [
    ("listen not a table", 'listen = "127.0.0.1:25"\n', "listen"),
    ("unknown listen key", "[listen]\nport = 25\n", "listen.port"),
    ("smtp a number", "[listen]\nsmtp = 25\n", "listen.smtp"),
    ("smtp without port", '[listen]\nsmtp = "127.0.0.1"\n', "listen.smtp"),
    ("lmtp port too big", '[listen]\nlmtp = "127.0.0.1:99999"\n', "listen.lmtp"),
    ("lmtp list with a number", '[listen]\nlmtp = ["127.0.0.1:2424", 2425]\n', "listen.lmtp"),
    ("relative unix socket", '[listen]\nlmtp = "unix:run/lmtp"\n', "listen.lmtp"),
    ("address twice", '[listen]\nsmtp = ["127.0.0.1:25", "127.0.0.1:25"]\n', "listen.smtp"),
    ("lmtp and smtp on one port", '[listen]\nsmtp = "127.0.0.1:25"\nlmtp = "127.0.0.1:25"\n', "listen.smtp"),
    ("max size a string", '[listen]\nmax_message_bytes = "50M"\n', "listen.max_message_bytes"),
    ("max size tiny", "[listen]\nmax_message_bytes = 10\n", "listen.max_message_bytes"),
    ("no connections", "[listen]\nmax_connections = 0\n", "listen.max_connections"),
    ("timeout zero", "[listen]\ntimeout = 0\n", "listen.timeout"),
    ("timeout a bool", "[listen]\ntimeout = true\n", "listen.timeout"),
    ("no workers", "[listen]\nworkers = 0\n", "listen.workers"),
    ("too many workers", "[listen]\nworkers = 50\n", "listen.workers"),
    ("workers a float", "[listen]\nworkers = 2.5\n", "listen.workers"),
    ("cert without key", '[listen]\ntls_cert = "/etc/cert.pem"\n', "listen.tls_key"),
    ("key without cert", '[listen]\ntls_key = "/etc/key.pem"\n', "listen.tls_cert"),
    ("empty cert", '[listen]\ntls_cert = ""\ntls_key = "/etc/key.pem"\n', "listen.tls_cert"),
]


@pytest.mark.parametrize(
    ("text", "key"), [(t, k) for _, t, k in LISTEN_INVALID], ids=[c for c, _, _ in LISTEN_INVALID]
)
def test_invalid_listen_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/d"\n' + text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.key == key
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [(t, k) for c, t, k in LISTEN_INVALID if c in ("smtp without port", "no workers", "cert without key")],
)
def test_maild_serve_with_an_invalid_listen_config_exits_78(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "maild.toml", f'data_dir = "{tmp_path / "data"}"\n' + text)
    assert_one_line_config_error(run_cli("maild", "serve", config=path), "maild serve", key)
    assert_one_line_config_error(run_cli("maild", "check-config", config=path), "maild", key)


def test_maild_serve_with_a_certificate_it_cannot_load_exits_78(tmp_path: Path) -> None:
    cert = write(tmp_path / "cert.pem", "not a certificate\n")
    text = f'data_dir = "{tmp_path / "data"}"\n[listen]\ntls_cert = "{cert}"\ntls_key = "{cert}"\n'
    path = write(tmp_path / "maild.toml", text)
    # check-config and `maild pipe` do not read the files (they may run as a user who cannot).
    assert run_cli("maildctl", "init", config=path).returncode == 0
    assert run_cli("maild", "check-config", config=path).returncode == 0
    line = assert_one_line_config_error(
        run_cli("maild", "serve", config=path), "maild serve", "listen.tls_cert"
    )
    assert str(cert) in line


# --- [[imap]] accounts ------------------------------------------------------------------------------

IMAP_MINIMAL = '[[imap]]\nname = "support"\ndesk = "support"\nhost = "imap.example.com"\nusername = "u"\n'


def test_without_imap_no_accounts(tmp_path: Path) -> None:
    assert load_config(str(write(tmp_path / "maild.toml", 'data_dir = "/d"\n'))).imap == ()


def test_imap_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/d"\n' + IMAP_MINIMAL + 'password_env = "IMAP_PW"\n')
    [account] = load_config(str(path)).imap
    assert account == ImapAccount(
        name="support", desk="support", host="imap.example.com", username="u", password_env="IMAP_PW"
    )
    assert (account.port, account.tls, account.folder, account.move_to) == (993, True, "INBOX", None)
    assert (account.poll_seconds, account.idle, account.password_file) == (60.0, True, None)


def test_imap_with_every_key_and_two_accounts(tmp_path: Path) -> None:
    text = (
        'data_dir = "/d"\n'
        + IMAP_MINIMAL
        + 'password_file = "secrets/imap.pass"\nport = 1993\nfolder = "Help Desk"\nmove_to = "Done"\n'
        + "poll_seconds = 2.5\nidle = false\n"
        + '[[imap]]\nname = "local"\ndesk = "sales"\nhost = "127.0.0.1"\ntls = false\nusername = "s"\n'
        + 'password_env = "SALES_PW"\n'
    )
    first, second = load_config(str(write(tmp_path / "etc" / "maild.toml", text))).imap
    # Relative to the config file, like data_dir.
    assert first.password_file == tmp_path / "etc" / "secrets" / "imap.pass"
    assert (first.port, first.folder, first.move_to, first.poll_seconds, first.idle) == (
        1993,
        "Help Desk",
        "Done",
        2.5,
        False,
    )
    assert (second.name, second.desk, second.tls, second.port) == ("local", "sales", False, 143)


def test_imap_password_is_read_when_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = write(tmp_path / "imap.pass", "s3cret\n")
    text = (
        f'data_dir = "/d"\n{IMAP_MINIMAL}password_file = "{secret}"\n'
        f'{IMAP_MINIMAL.replace("support", "other")}password_env = "MAILD_TEST_IMAP_PW"\n'
    )
    monkeypatch.delenv("MAILD_TEST_IMAP_PW", raising=False)
    cfg = load_config(str(write(tmp_path / "maild.toml", text)))  # loading never reads secrets
    from_file, from_env = cfg.imap
    assert from_file.password() == "s3cret"  # the line end is not part of it
    with pytest.raises(ConfigError) as info:
        check_imap_secrets(cfg)
    assert info.value.key == "imap.other.password_env"
    assert "MAILD_TEST_IMAP_PW" in str(info.value)
    monkeypatch.setenv("MAILD_TEST_IMAP_PW", "from-env")
    check_imap_secrets(cfg)
    assert from_env.password() == "from-env"


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "cannot read"), ("\n", "is empty"), (b"\xff\xfe", "not UTF-8")]
)
def test_imap_password_file_problems_name_the_key(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    secret = tmp_path / "imap.pass"
    if isinstance(content, bytes):
        secret.write_bytes(content)
    elif content is not None:
        secret.write_text(content)
    path = write(tmp_path / "maild.toml", f'data_dir = "/d"\n{IMAP_MINIMAL}password_file = "{secret}"\n')
    cfg = load_config(str(path))
    with pytest.raises(ConfigError) as info:
        check_imap_secrets(cfg)
    assert info.value.key == "imap.support.password_file"
    assert problem in str(info.value) and str(secret) in str(info.value)
    assert "\n" not in str(info.value)


IMAP_INVALID: list[tuple[str, str, str]] = [
    ("imap a table", '[imap]\nname = "x"\n', "imap"),
    ("imap a string", 'imap = "imap.example.com"\n', "imap"),
    ("entry not a table", 'imap = ["x"]\n', "imap[0]"),
    ("no name", '[[imap]]\ndesk = "d"\n', "imap[0].name"),
    ("empty name", '[[imap]]\nname = " "\n', "imap[0].name"),
    ("name a number", "[[imap]]\nname = 5\n", "imap[0].name"),
    ("unknown key", IMAP_MINIMAL + 'password_env = "P"\nhots = "x"\n', "imap.support.hots"),
    ("password in the file", IMAP_MINIMAL + 'password = "hunter2"\n', "imap.support.password"),
    ("no password source", IMAP_MINIMAL, "imap.support.password_env"),
    (
        "two password sources",
        IMAP_MINIMAL + 'password_env = "P"\npassword_file = "/p"\n',
        "imap.support.password_env",
    ),
    ("empty password_env", IMAP_MINIMAL + 'password_env = ""\n', "imap.support.password_env"),
    ("no desk", '[[imap]]\nname = "n"\nhost = "h"\nusername = "u"\npassword_env = "P"\n', "imap.n.desk"),
    ("no host", '[[imap]]\nname = "n"\ndesk = "d"\nusername = "u"\npassword_env = "P"\n', "imap.n.host"),
    ("no username", '[[imap]]\nname = "n"\ndesk = "d"\nhost = "h"\npassword_env = "P"\n', "imap.n.username"),
    ("port a string", IMAP_MINIMAL + 'password_env = "P"\nport = "993"\n', "imap.support.port"),
    ("port a bool", IMAP_MINIMAL + 'password_env = "P"\nport = true\n', "imap.support.port"),
    ("port zero", IMAP_MINIMAL + 'password_env = "P"\nport = 0\n', "imap.support.port"),
    ("tls a number", IMAP_MINIMAL + 'password_env = "P"\ntls = 1\n', "imap.support.tls"),
    ("plain IMAP over the network", IMAP_MINIMAL + 'password_env = "P"\ntls = false\n', "imap.support.tls"),
    ("idle a string", IMAP_MINIMAL + 'password_env = "P"\nidle = "yes"\n', "imap.support.idle"),
    (
        "poll_seconds zero",
        IMAP_MINIMAL + 'password_env = "P"\npoll_seconds = 0\n',
        "imap.support.poll_seconds",
    ),
    ("empty folder", IMAP_MINIMAL + 'password_env = "P"\nfolder = ""\n', "imap.support.folder"),
    ("move_to the folder", IMAP_MINIMAL + 'password_env = "P"\nmove_to = "INBOX"\n', "imap.support.move_to"),
    ("name too long", IMAP_MINIMAL.replace("support", "s" * 201, 1) + 'password_env = "P"\n', "imap.s"),
    ("duplicate names", (IMAP_MINIMAL + 'password_env = "P"\n') * 2, "imap.support.name"),
]


@pytest.mark.parametrize(
    ("text", "key"), [(t, k) for _, t, k in IMAP_INVALID], ids=[c for c, _, _ in IMAP_INVALID]
)
def test_invalid_imap_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "maild.toml", 'data_dir = "/d"\n' + text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.key.startswith(key), info.value
    assert str(info.value).startswith(f"config: {info.value.key}: ")
    assert "\n" not in str(info.value)
    assert "hunter2" not in str(info.value)


def test_invalid_imap_config_exits_78_from_check_config(tmp_path: Path) -> None:
    path = write(
        tmp_path / "maild.toml", 'data_dir = "/d"\n' + IMAP_MINIMAL + 'password_env = "P"\nhots = "x"\n'
    )
    line = assert_one_line_config_error(
        run_cli("maild", "check-config", config=path), "maild", "imap.support.hots"
    )
    assert "unknown key" in line and "host" in line
