"""A private Postfix 3.7 for tests: its own config_directory, queue_directory and data_directory in a
private directory (see private_base), smtpd on a free loopback port, a log file of its own; it never
reads or touches /etc/postfix or the system's Postfix, and several instances run side by side (each has
its own dirs, pid and lock files and ports).

    from tests.servers.postfix import postfix_fixture  # noqa: F401  (the fixture `postfix`)

    def test_x(postfix: StartPostfix) -> None:
        mta = postfix(lmtp_port=2424, relays={"mail.test": "lmtp:inet:127.0.0.1:24"})
        mta.send("alice@mail.test", "support@support.test", subject="Hello", body="Hi")
        mta.wait_queue_empty()

The settings that connect Postfix and maild are read from docs/postfix.md (the blocks marked
`<!-- test-config: NAME -->`), with only the domain, ports, paths and pipe user replaced: the tests run
what the document tells an admin to write. Around them come the settings of a private test instance: no
DNS (every destination is a transport map entry; anything else is refused by `default_transport = error`),
queue timers of a second or two so deferred mail is retried at once, every service unchrooted.

Needs root (Postfix's master starts as root and its daemons switch to the `postfix` user); without root or
without /usr/sbin/postfix the tests skip, or fail when MAILD_REQUIRE_SERVERS=1 (CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

POSTFIX = Path("/usr/sbin/postfix")
SWAKS = Path("/usr/bin/swaks")
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "postfix.md"
BIN = Path(sys.executable).parent
DOC_DOMAIN = "support.example.com"
PIPE_USER = "nobody"  # `maild pipe` must not run as root (Postfix refuses user=root)
TIMEOUT = 60.0
COMMAND_TIMEOUT = 60  # seconds for one postfix/postqueue/swaks call

# The private instance: everything here is test plumbing, not advice for admins (that is docs/postfix.md).
INSTANCE_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
maillog_file = {maillog}
maillog_file_prefixes = {base}
myhostname = mta.test
mydomain = test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
# No DNS at all: every domain a test uses has a transport map entry with a numeric address.
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no
default_transport = error:5.1.2 no route to this domain in the test instance
# Deferred mail is retried within a second or two instead of minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
"""

# Debian's master.cf services, none chrooted (no chroot tree to build), smtpd on the test's port.
INSTANCE_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


# --- docs/postfix.md as the source of the settings ----------------------------------------------------


def doc_block(name: str) -> str:
    """The fenced block after `<!-- test-config: NAME -->` in docs/postfix.md."""
    text = DOC.read_text()
    found = re.search(rf"<!-- test-config: {re.escape(name)} -->\n```[a-z]*\n(.*?)```", text, re.S)
    if found is None:
        raise LookupError(f"{DOC} has no block marked 'test-config: {name}'")
    return found.group(1)


def _parameters(block: str) -> dict[str, str]:
    """main.cf lines `name = value` (comments and blank lines skipped)."""
    found = {}
    for line in block.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def maild_settings(lmtp_port: int | None = None, smarthost_port: int | None = None) -> dict[str, Any]:
    """maild's side of docs/postfix.md, as TOML tables: `listen` (LMTP on `lmtp_port`) and `outgoing`
    (the smarthost on `smarthost_port`), each only when its port is given."""
    tables: dict[str, Any] = {}
    if lmtp_port is not None:
        listen = tomllib.loads(doc_block("maild.toml lmtp"))["listen"]
        assert listen["lmtp"] == "127.0.0.1:2424", listen
        tables["listen"] = {**listen, "lmtp": f"127.0.0.1:{lmtp_port}"}
    if smarthost_port is not None:
        outgoing = tomllib.loads(doc_block("maild.toml smarthost"))["outgoing"]
        assert outgoing["smarthost"] == "127.0.0.1:25", outgoing
        tables["outgoing"] = {**outgoing, "smarthost": f"127.0.0.1:{smarthost_port}"}
    return tables


# --- the pipe user's maild ----------------------------------------------------------------------------

_venv_maild_runs: dict[str, bool] = {}  # per user: asked once per session (a subprocess each time)


def pipe_maild_command(directory: Path, user: str = PIPE_USER) -> str:
    """A `maild` the pipe user can run: the venv's own when the user can execute it; otherwise a script in
    `directory` (which the user must be able to traverse) that runs the venv's packages with the system's
    Python of the same minor version: the venv's interpreter may sit where only root can reach it (pyenv
    under /root on the development machine). The same code and libraries, another copy of CPython 3.x."""
    maild = BIN / "maild"
    if user not in _venv_maild_runs:
        try:
            probe = subprocess.run(
                [str(maild), "--help"], user=user, capture_output=True, timeout=COMMAND_TIMEOUT, cwd="/"
            )
            _venv_maild_runs[user] = probe.returncode == 0
        except PermissionError:  # the interpreter of the shebang is out of reach
            _venv_maild_runs[user] = False
    if _venv_maild_runs[user]:
        return str(maild)
    python = Path(f"/usr/bin/python3.{sys.version_info.minor}")
    if not python.exists():
        raise RuntimeError(f"{user} cannot run {maild}, and there is no {python} to run maild's code with")
    shim = directory / "maild"
    site_packages = Path(sys.prefix) / "lib" / f"python3.{sys.version_info.minor}" / "site-packages"
    # -S: not the system's site-packages; the venv's are added with their .pth files (the editable install).
    shim.write_text(
        f"#!{python} -S\nimport site, sys\nsite.addsitedir({str(site_packages)!r})\n"
        f"sys.path.insert(0, {str(ROOT)!r})\nfrom maild.ingress.cli import main\nsys.exit(main())\n"
    )
    shim.chmod(0o755)
    check = subprocess.run(
        [str(shim), "--help"], user=user, capture_output=True, timeout=COMMAND_TIMEOUT, cwd="/"
    )
    if check.returncode != 0:
        raise RuntimeError(f"{user} cannot run maild through {shim}: {check.stderr.decode(errors='replace')}")
    return str(shim)


def give_to_pipe_user(*paths: Path, user: str = PIPE_USER) -> None:
    """Make maild's data dir (and a SQLite database's dir) the pipe user's, recursively. SQLite run as root
    gives the files it creates (-wal, -shm) the database file's owner, so the tests' own access as root
    does not take them away again."""
    entry = pwd.getpwnam(user)
    for path in paths:
        for folder, dirs, files in os.walk(path):
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


# --- the instance -------------------------------------------------------------------------------------


@dataclass
class SendResult:
    returncode: int
    output: str

    @property
    def last_reply(self) -> str:
        """The server's last reply line before QUIT (swaks prints them as `<-  250 …` / `<** 550 …`)."""
        replies = [line[4:].strip() for line in self.output.splitlines() if line.startswith(("<- ", "<**"))]
        replies = [r for r in replies if not r.startswith("221")]
        return replies[-1] if replies else ""


@dataclass
class Postfix:
    base: Path
    smtp_port: int
    desk_domain: str
    transport: dict[str, str] = field(default_factory=dict)
    main_cf: dict[str, str] = field(default_factory=dict)
    master_cf_extra: str = ""
    _started: bool = field(default=False, repr=False)

    @property
    def config_dir(self) -> Path:
        return self.base / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.base / "queue"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def maillog(self) -> Path:
        return self.base / "maillog"

    # --- what tests use -------------------------------------------------------------------------------

    def send(
        self,
        sender: str,
        recipients: str | Sequence[str],
        raw: bytes | None = None,
        *,
        subject: str = "Hello",
        body: str = "Hello, this is a test.",
        headers: Sequence[str] = (),
        check: bool = True,
    ) -> SendResult:
        """Send one mail with swaks to this Postfix's smtpd. `raw` as it is, or a mail swaks builds from
        `subject`, `body` and `headers`. Raises on a refusal unless `check=False`."""
        rcpts = [recipients] if isinstance(recipients, str) else list(recipients)
        argv = [str(SWAKS), "--server", f"127.0.0.1:{self.smtp_port}", "--from", sender]
        argv += ["--to", ",".join(rcpts), "--helo", "client.test", "--suppress-data"]
        if raw is not None:
            argv += ["--data", "-"]
        else:
            argv += ["--header", f"Subject: {subject}", "--body", body]
            for header in headers:
                argv += ["--add-header", header]
        proc = subprocess.run(argv, input=raw or b"", capture_output=True, timeout=COMMAND_TIMEOUT)
        result = SendResult(proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"swaks exited {proc.returncode}:\n{result.output}\n{self.log_tail()}")
        return result

    def send_many(self, mails: Sequence[tuple[str, str, bytes]], connections: int = 8) -> list[str]:
        """Send many mails (sender, recipient, raw) over `connections` parallel SMTP sessions (swaks per
        mail would spend seconds starting Perl); returns Postfix's reply text per mail, in order."""
        import aiosmtplib

        replies: list[str] = [""] * len(mails)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(mails)):
            queue.put_nowait(index)

        async def session() -> None:
            async with aiosmtplib.SMTP(
                hostname="127.0.0.1", port=self.smtp_port, timeout=TIMEOUT, start_tls=False
            ) as client:
                while not queue.empty():
                    index = queue.get_nowait()
                    sender, recipient, raw = mails[index]
                    _, replies[index] = await client.sendmail(sender, [recipient], raw)

        async def run() -> None:
            await asyncio.gather(*(session() for _ in range(connections)))

        asyncio.run(run())
        return replies

    def queue(self) -> list[dict[str, Any]]:
        """The queue as `postqueue -j` reports it: one dict per message (queue_name, queue_id, sender,
        recipients with delay_reason, …)."""
        proc = self._run(["postqueue", "-c", str(self.config_dir), "-j"])
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def wait_queue_empty(self, timeout: float = TIMEOUT, flush_every: float = 5.0) -> None:
        """Wait until Postfix has nothing queued, asking it to retry (`postqueue -f`) every `flush_every`
        seconds: a delivery cut mid-session (maild killed, database locked) can leave the file in the
        incoming queue "still being delivered", and qmgr looks at it again only on its next trigger (seen
        in full runs under load, never alone)."""
        last_flush = time.monotonic()

        def empty() -> bool:
            nonlocal last_flush
            if not self.queue():
                return True
            if time.monotonic() - last_flush >= flush_every:
                self.flush()
                last_flush = time.monotonic()
            return False

        self.wait_for(empty, timeout, "an empty Postfix queue", queue=True)

    def wait_log(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first maillog line matching the regular expression `pattern`."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in self.log_lines():
                if match := regex.search(line):
                    return match
            return None

        return self.wait_for(found, timeout, f"a maillog line matching {pattern!r}")

    def wait_for(
        self, condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "", queue: bool = False
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                details = f"\nqueue: {json.dumps(self.queue(), indent=1)[:3000]}" if queue else ""
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}{details}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_lines(self) -> list[str]:
        try:
            return self.maillog.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def log_tail(self, lines: int = 40) -> str:
        return "Postfix maillog (tail):\n" + "\n".join(self.log_lines()[-lines:])

    def flush(self) -> None:
        """Retry deferred mail now (`postqueue -f`), instead of at the next queue run."""
        self._run(["postqueue", "-c", str(self.config_dir), "-f"])

    # --- life cycle -----------------------------------------------------------------------------------

    def write_config(self) -> None:
        for folder in (self.config_dir, self.queue_dir, self.data_dir):
            folder.mkdir(parents=True, exist_ok=True)
        instance = _parameters(
            INSTANCE_MAIN_CF.format(
                queue=self.queue_dir, data=self.data_dir, maillog=self.maillog, base=self.base
            )
        )
        main = {**instance, **self.main_cf}
        main["transport_maps"] = main.get("transport_maps", "").replace(
            "/etc/postfix/", f"{self.config_dir}/"
        )
        (self.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        master = INSTANCE_MASTER_CF.format(port=self.smtp_port) + self.master_cf_extra
        (self.config_dir / "master.cf").write_text(master)
        table = self.config_dir / "transport"
        table.write_text("".join(f"{domain} {nexthop}\n" for domain, nexthop in self.transport.items()))
        self._run(["postmap", "-c", str(self.config_dir), f"hash:{table}"])
        # The data directory (master.lock, caches) belongs to the mail_owner. The queue's subdirectories
        # are made by `postfix start` (its check); `set-permissions` would also chmod the system's files.
        shutil.chown(self.data_dir, "postfix")

    def start(self) -> None:
        self.maillog.touch()
        self._run(["postfix", "-c", str(self.config_dir), "start"])
        self._started = True
        deadline = time.monotonic() + TIMEOUT
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.smtp_port), 1) as s,
            ):
                if s.recv(512).startswith(b"220"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix does not greet on port {self.smtp_port}\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """What `postfix stop` does, without its one-second polling: SIGTERM to the master (it stops its
        children), wait until it is gone, SIGKILL to its process group when it does not go."""
        if not self._started:
            return
        self._started = False
        pid = self._master_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                break
            time.sleep(0.02)

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}\n{self.log_tail()}"
            )
        return proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (its parent, master, reaps no more) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StartPostfix(Protocol):
    def __call__(
        self,
        *,
        lmtp_port: int | None = None,
        pipe_config: Path | None = None,
        relays: dict[str, str] | None = None,
        message_size_limit: int | None = None,
        desk_domain: str = "support.test",
        main_cf: dict[str, str] | None = None,
    ) -> Postfix: ...


def make_postfix(
    base: Path,
    *,
    lmtp_port: int | None = None,
    pipe_config: Path | None = None,
    relays: dict[str, str] | None = None,
    message_size_limit: int | None = None,
    desk_domain: str = "support.test",
    main_cf: dict[str, str] | None = None,
) -> Postfix:
    """A configured, not yet started instance in `base`: the desk domain to maild by LMTP (`lmtp_port`)
    or by the pipe transport (`pipe_config`: maild's config file), `relays` (domain → Postfix nexthop,
    e.g. the customers' Dovecot) for the other domains a test writes to; `main_cf` adds or overrides
    main.cf parameters for what a test is after."""
    if (lmtp_port is None) == (pipe_config is None):
        raise ValueError("give lmtp_port or pipe_config")

    def for_test(text: str) -> str:
        return text.replace(DOC_DOMAIN, desk_domain)

    main = _parameters(for_test(doc_block("main.cf")))
    master = ""
    if lmtp_port is not None:
        route = for_test(doc_block("transport lmtp")).replace("127.0.0.1:2424", f"127.0.0.1:{lmtp_port}")
    else:
        assert pipe_config is not None
        route = for_test(doc_block("transport pipe"))
        main.update(_parameters(doc_block("main.cf pipe")))
        master = (
            doc_block("master.cf pipe")
            .replace("/usr/local/bin/maild", pipe_maild_command(base))
            .replace("/etc/maild/maild.toml", str(pipe_config))
            .replace("user=maild", f"user={PIPE_USER}")
        )
    if message_size_limit is not None:
        main["message_size_limit"] = str(message_size_limit)
    main.update(main_cf or {})
    domain, nexthop = route.split()
    return Postfix(
        base=base,
        smtp_port=_free_port(),
        desk_domain=desk_domain,
        transport={domain: nexthop, **(relays or {})},
        main_cf=main,
        master_cf_extra=master,
    )


def require_postfix() -> None:
    problem = None
    if not POSTFIX.exists() or not SWAKS.exists():
        problem = "postfix or swaks not installed"
    elif os.geteuid() != 0:
        problem = "a private Postfix instance needs root"
    if problem is None:
        return
    if os.environ.get("MAILD_REQUIRE_SERVERS") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


def private_base(prefix: str = "maild-postfix-") -> Path:
    """A fresh directory below /tmp that other users may traverse (0711), not pytest's tmp_path: Postfix's
    master opens its lock file in data_directory as the `postfix` user, which pytest's 0700 directories
    would shut out (and pytest puts its root back to 0700 at every session start, so opening those up
    would race with other sessions)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o711)
    return base


@pytest.fixture(name="postfix")  # imported as postfix_fixture: a test's `postfix` parameter shadows nothing
def postfix_fixture(tmp_path: Path) -> Iterator[StartPostfix]:
    """`postfix(lmtp_port=… | pipe_config=…, relays=…, message_size_limit=…)` starts a private Postfix
    (see make_postfix); every instance started is stopped and removed after the test. `tmp_path/postfix-N`
    links to each instance's directory while the test runs."""
    require_postfix()
    started: list[Postfix] = []
    bases: list[Path] = []

    def start(**options: Any) -> Postfix:
        for attempt in range(3):
            base = private_base()
            bases.append(base)
            instance = make_postfix(base, **options)
            instance.write_config()
            try:
                instance.start()
            except (RuntimeError, AssertionError) as exc:
                instance.stop()
                # The free port was picked before master bound it: another process may have won the race.
                if "Address already in use" not in instance.log_tail() or attempt == 2:
                    pytest.fail(str(exc), pytrace=False)
                continue
            with contextlib.suppress(OSError):
                (tmp_path / f"postfix-{len(started)}").symlink_to(base)
            started.append(instance)
            return instance
        raise AssertionError("unreachable")

    try:
        yield start
    finally:
        for instance in started:
            instance.stop()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)
