"""A private Dovecot 2.3 for tests: IMAP and LMTP on free loopback ports, plain text (no TLS), users in a
passwd-file, Maildir storage; its own config, base_dir, state_dir and log, so it never touches
/etc/dovecot or the system's dovecot service. A fresh instance per test:

    from tests.servers.dovecot import dovecot_fixture  # noqa: F401  (registers the fixture `dovecot`)

    def test_x(dovecot: Dovecot) -> None:
        address = dovecot.add_user("support")           # support@mail.test, password "secret"
        dovecot.deliver(address, raw)                     # IMAP APPEND
        assert dovecot.messages(address) == [raw]         # BODY.PEEK[], UID order
        assert "\\Seen" in dovecot.flags(address)[0]

Running as root (CI): Dovecot refuses mail access as uid 0, so mailboxes belong to `nobody`; and since
pytest's tmp_path sits below 0700 directories that `nobody` cannot traverse, the mail store is a
private temporary directory under /tmp (0711, removed at teardown); the auth processes run as root to
read the passwd-file in tmp_path. As another user everything runs as that user inside tmp_path.
Without /usr/sbin/dovecot the tests skip, or fail when MAILD_REQUIRE_SERVERS=1 (CI).
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DOVECOT = Path("/usr/sbin/dovecot")
START_TIMEOUT = 20.0
IO_TIMEOUT = 30.0  # every imaplib call of the helpers; a hung server fails the test instead of hanging it
MAX_BASE_DIR = 60  # unix socket paths are limited to 107 bytes; Dovecot's longest name needs ~40 of them
ROOT_MAIL_USER = "nobody"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(mailbox: str) -> str:
    """imaplib sends arguments as they are: a folder name needs IMAP quoting (spaces, quotes)."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(what: str, typ: str, data: list[object]) -> None:
    if typ != "OK":
        raise RuntimeError(f"dovecot: {what} failed: {typ} {data!r}")


@dataclass
class Dovecot:
    host: str
    imap_port: int
    lmtp_port: int
    domain: str
    directory: Path = field(repr=False)  # config, passwd-file, base_dir, state_dir, log
    mail_root: Path = field(repr=False)
    base_dir: Path = field(repr=False)  # sockets: short enough for unix socket paths
    mail_uid: int = field(repr=False, default=0)
    mail_gid: int = field(repr=False, default=0)
    _passwords: dict[str, str] = field(default_factory=dict, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _private_mail_root: bool = field(default=False, repr=False)

    # --- the interface other tests use ------------------------------------------------------------

    def add_user(self, local: str, password: str = "secret") -> str:
        """A new mailbox user; returns local@domain, usable at once (the call waits until it can log in)."""
        if any(c in local + password for c in ":\n\r@"):
            raise ValueError("':', '@' and line breaks do not fit a passwd-file line")
        address = f"{local}@{self.domain}".lower()
        home = self.mail_root / self.domain / local.lower()
        with self.passwd_file.open("a") as fh:
            fh.write(f"{address}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{home}::\n")
        self._passwords[address] = password
        if self.running:
            # Dovecot stats the passwd-file at most once a second: a lookup in the same second as the
            # last one still sees the old file. Waiting for the next second beats failed logins, which
            # the auth penalty (per IP, doubling from 2 s) would slow down further.
            deadline = time.monotonic() + START_TIMEOUT
            time.sleep(1.02 - time.time() % 1.0)
            while not self._can_log_in(address):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dovecot: {address} cannot log in:\n{self.log_tail()}")
                time.sleep(0.5)
        return address

    def messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """The raw messages of a folder in UID order, read without setting \\Seen; [] if it does not exist."""
        return [body for _, _, body in self._fetch(address, folder, "(UID FLAGS BODY.PEEK[])")]

    def flags(self, address: str, folder: str = "INBOX") -> list[set[str]]:
        """Per message in UID order, its stored flags (\\Recent is per session, so left out)."""
        return [flags for _, flags, _ in self._fetch(address, folder, "(UID FLAGS)")]

    def deliver(self, address: str, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message into a mailbox (IMAP APPEND; the folder is created when missing)."""
        with self.imap(address) as conn:
            if folder.upper() != "INBOX":
                conn.create(_quote(folder))  # NO when it exists already: fine
            typ, data = conn.append(_quote(folder), "", imaplib.Time2Internaldate(time.time()), raw)
            _check(f"APPEND to {folder} of {address}", typ, data)

    # --- more for tests that need it ----------------------------------------------------------------

    @contextlib.contextmanager
    def imap(self, address: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib client for `address` (e.g. to delete a folder or read its UIDVALIDITY)."""
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=IO_TIMEOUT)
        try:
            conn.login(address, self._passwords[address])
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    @property
    def passwd_file(self) -> Path:
        return self.directory / "users"

    @property
    def log_file(self) -> Path:
        return self.directory / "dovecot.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (again, on the same ports: users and mail are kept) and wait until both ports answer."""
        if self.running:
            return
        self._write_config()
        self._proc = subprocess.Popen(
            [str(DOVECOT), "-c", str(self.directory / "dovecot.conf"), "-F"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "dovecot.stderr").open("ab"),
        )
        deadline = time.monotonic() + START_TIMEOUT
        pending = {self.imap_port, self.lmtp_port}
        while pending:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited {self._proc.returncode} at start:\n{self._problems()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovecot did not listen within {START_TIMEOUT}s:\n{self._problems()}")
            for port in list(pending):
                with contextlib.suppress(OSError), socket.create_connection((self.host, port), timeout=1):
                    pending.discard(port)
            if pending:
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the master (it stops its children) and wait for it; the ports are free afterwards."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def cleanup(self) -> None:
        self.stop()
        if self._private_mail_root:
            shutil.rmtree(self.mail_root.parent, ignore_errors=True)
        if not self.base_dir.is_relative_to(self.directory):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- internals ------------------------------------------------------------------------------------

    def _problems(self) -> str:
        stderr = self.directory / "dovecot.stderr"
        text = stderr.read_text(errors="replace").strip() if stderr.exists() else ""
        return "\n".join(part for part in (text, self.log_tail()) if part)

    def _can_log_in(self, address: str) -> bool:
        try:
            with self.imap(address):
                return True
        except imaplib.IMAP4.error:
            return False

    def _fetch(self, address: str, folder: str, items: str) -> list[tuple[int, set[str], bytes]]:
        with self.imap(address) as conn:
            typ, data = conn.select(_quote(folder), readonly=True)  # EXAMINE: nothing changes
            if typ != "OK":
                return []
            if int(data[0] or 0) == 0:
                return []  # "1:*" on an empty folder is an error in Dovecot
            typ, data = conn.uid("FETCH", "1:*", items)
            _check(f"UID FETCH in {folder} of {address}", typ, data)
        found = []
        for item in data:
            head, body = (item[0], item[1]) if isinstance(item, tuple) else (item, b"")
            if not isinstance(head, bytes) or not (uid := re.search(rb"UID (\d+)", head)):
                continue  # the closing ")" of a literal
            flags = {f.decode() for f in imaplib.ParseFlags(head)} - {"\\Recent"}
            found.append((int(uid.group(1)), flags, body))
        return sorted(found, key=lambda entry: entry[0])

    def _write_config(self) -> None:
        root = os.geteuid() == 0
        me = pwd.getpwuid(os.geteuid()).pw_name
        my_group = grp.getgrgid(os.getegid()).gr_name
        if root:
            # Dovecot's own unprivileged users (the Debian package creates them); auth as root because
            # the passwd-file lives below pytest's 0700 directories.
            users = "default_internal_user = dovecot\ndefault_login_user = dovenull\n"
            services = "service auth {\n  user = root\n}\nservice auth-worker {\n  user = root\n}\n"
        else:
            # Nothing may switch users or chroot: every service runs as the caller.
            users = (
                f"default_internal_user = {me}\ndefault_internal_group = {my_group}\n"
                f"default_login_user = {me}\n"
            )
            services = (
                "service anvil {\n  chroot =\n}\nservice imap-login {\n  chroot =\n}\n"
                f"service auth-worker {{\n  user = {me}\n}}\n"
            )
        (self.directory / "state").mkdir(exist_ok=True)
        self.passwd_file.touch()
        config = f"""\
# A private test instance (tests/servers/dovecot.py); nothing here is read from /etc/dovecot.
base_dir = {self.base_dir}
state_dir = {self.directory / "state"}
instance_name = maild-test-{self.imap_port}
protocols = imap lmtp
listen = {self.host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0  # a wrong password in a test fails at once, not after 2 s
log_path = {self.log_file}
{users}first_valid_uid = {min(self.mail_uid, 500) or 1}
first_valid_gid = 1
mail_location = maildir:~/Maildir
# inotify wakes IDLE at once; this is the fallback where it is not available.
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {self.passwd_file}
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {self.passwd_file}
}}
{services}service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0
  }}
}}
"""
        (self.directory / "dovecot.conf").write_text(config)


def make_dovecot(directory: Path, domain: str = "mail.test") -> Dovecot:
    """A configured, not yet started instance whose files live in `directory`."""
    if os.geteuid() == 0:
        # Dovecot refuses uid 0 for mail, and `nobody` cannot traverse pytest's 0700 tmp directories.
        user = pwd.getpwnam(ROOT_MAIL_USER)
        private = Path(tempfile.mkdtemp(prefix="maild-dovecot-"))
        private.chmod(0o711)
        mail_root = private / "mail"
        mail_root.mkdir()
        os.chown(mail_root, user.pw_uid, user.pw_gid)
        mail_root.chmod(0o700)
        uid, gid, own = user.pw_uid, user.pw_gid, True
    else:
        mail_root = directory / "mail"
        mail_root.mkdir()
        uid, gid, own = os.geteuid(), os.getegid(), False
    base_dir = directory / "run"
    if len(str(base_dir)) > MAX_BASE_DIR:
        base_dir = Path(tempfile.mkdtemp(prefix="maild-dovecot-run-"))
    return Dovecot(
        host="127.0.0.1",
        imap_port=_free_port(),
        lmtp_port=_free_port(),
        domain=domain,
        directory=directory,
        mail_root=mail_root,
        base_dir=base_dir,
        mail_uid=uid,
        mail_gid=gid,
        _private_mail_root=own,
    )


@pytest.fixture(name="dovecot")
def dovecot_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A fresh, running Dovecot per test; stopped and removed afterwards."""
    if not DOVECOT.exists():
        message = "dovecot not installed"
        if os.environ.get("MAILD_REQUIRE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = make_dovecot(tmp_path_factory.mktemp("dovecot"))
    try:
        for attempt in range(3):
            try:
                server.start()
                break
            except RuntimeError as exc:
                # Free ports are picked before Dovecot binds them: another process may win the race.
                if "in use" not in str(exc) or attempt == 2:
                    pytest.fail(str(exc), pytrace=False)
                server.imap_port, server.lmtp_port = _free_port(), _free_port()
        yield server
    finally:
        server.cleanup()


# The fixture under its own name too: importing `dovecot_fixture` (with noqa F401)
# keeps ruff quiet; importing `dovecot` works the same, but then every test parameter named `dovecot`
# is an F811 ("redefinition of unused name").
dovecot = dovecot_fixture
