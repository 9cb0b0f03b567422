"""The customers' web pages in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (same source package, so their versions always match), axe-core for accessibility,
full-page screenshots at a desktop and a phone width, and a desk served by a real `maild serve` with
`[web]` on loopback (`WebDesk`). Used by tests/test_web_browser.py and scripts/screenshots.py.

A page test is a few lines:

    def test_my_page(web_desk: WebDesk, browser: WebDriver) -> None:
        assert open_page(browser, web_desk.url("/my")) == 200
        check_axe(browser)                  # fails on any serious or critical violation, listing them
        screenshot(browser, PHONE)          # PNG bytes of the whole page, 390 px wide

Chromium runs with the flags this machine needs (no sandbox as root, no GPU, no network of its own: every
background service that would call out is off), a fresh profile, and only ever opens loopback URLs.
Without /usr/bin/chromium or /usr/bin/chromedriver the tests skip, or fail when MAILD_REQUIRE_SERVERS=1
(scripts/test.sh installs both from Debian's packages and sets it)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.cli import ctl, ok
from tests.daemon import TIMEOUT, LineClient, Serve, free_port, wait_until, write_config

try:  # a test dependency (pyproject's dev extra); without it the browser tests say so and skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.chrome.webdriver import WebDriver
except ImportError:  # pragma: no cover - reported by `missing_browser`
    webdriver = None  # type: ignore[assignment]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The machine's closed network refuses Chromium's own connections (updates, sync, safe browsing...):
# without these it spends its time on them, and the tests' timings with it.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm may be small in containers
)
DESKTOP, PHONE = 1280, 390
SERIOUS = ("serious", "critical")  # axe impacts that fail a test (minor/moderate are printed only)
AXE_TIMEOUT = 30.0
DESK_ADDRESS = "support@example.com"
AGENT = ("bob.agent@example.com", "Bob Builder")


# --- Chromium --------------------------------------------------------------------------------------------


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if webdriver is None:
        return "selenium is not installed (pip install -r requirements.lock)"
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if absent:
        return f"{' and '.join(absent)} not installed (apt-get install chromium chromium-driver)"
    return None


def require_browser() -> None:
    problem = missing_browser()
    if problem is None:
        return
    if os.environ.get("MAILD_REQUIRE_SERVERS") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


def start_chromium(profile: Path) -> WebDriver:
    """Headless Chromium with a fresh profile in `profile`; the driver's own log goes nowhere."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # an explicit browser and driver: Selenium Manager never runs
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(TIMEOUT)
    driver.set_script_timeout(AXE_TIMEOUT)
    return driver


@pytest.fixture(name="browser", scope="module")  # imported as browser_fixture
def browser_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One Chromium for a test module (starting one takes about a second)."""
    require_browser()
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


def set_width(driver: WebDriver, width: int, height: int = 900) -> None:
    """The viewport as a device of that width would have it (below 600 px: a phone, meta viewport on)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def open_page(driver: WebDriver, url: str, width: int = DESKTOP) -> int:
    """Load `url` at `width` and wait until it is complete; the HTTP status of the page."""
    set_width(driver, width)
    driver.get(url)
    wait_until(
        lambda: driver.execute_script("return document.readyState") == "complete",
        what=f"{url} to load",
    )
    status = driver.execute_script(
        "const [nav] = performance.getEntriesByType('navigation'); return nav ? nav.responseStatus : 0"
    )
    return int(status)


def text_of(driver: WebDriver, css: str = "body") -> str:
    """What a reader sees of the element(s) matched by `css`, joined with newlines."""
    return "\n".join(e.text for e in driver.find_elements("css selector", css))


# --- axe-core ---------------------------------------------------------------------------------------------


def axe_source() -> str:
    """axe-core's axe.min.js, at the version pinned in requirements.lock (bundled by selenium-axe-python)."""
    return (resources.files("selenium_axe_python") / "axe-core" / "axe.min.js").read_text()


def axe_results(driver: WebDriver) -> dict[str, Any]:
    """axe-core's full results for the page as loaded. The script is handed in through the driver, so the
    page's Content-Security-Policy (no script at all) stays as customers get it."""
    driver.execute_script(axe_source())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r)), e => done(JSON.stringify({error: String(e)})));"
    )
    results: dict[str, Any] = json.loads(result)
    if "error" in results:
        raise AssertionError(f"axe-core failed: {results['error']}")
    return results


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        lines += [f"    {' '.join(node['target'])}: {node['failureSummary']}" for node in v["nodes"]]
    return "\n".join(lines)


def check_axe(driver: WebDriver) -> list[dict[str, Any]]:
    """Fail on any serious or critical axe-core violation; the lesser ones are printed and returned."""
    violations = axe_results(driver)["violations"]
    serious = [v for v in violations if v["impact"] in SERIOUS]
    assert not serious, f"axe-core on {driver.current_url}:\n{describe(serious)}"
    if violations:
        print(f"axe-core, minor/moderate on {driver.current_url}:\n{describe(violations)}")
    return list(violations)


# --- screenshots ------------------------------------------------------------------------------------------


def screenshot(driver: WebDriver, width: int, path: Path | None = None) -> bytes:
    """The whole page at `width` as PNG (written to `path` when given); the page stays as it was. At a phone
    width a page without `<meta name="viewport">` is laid out 980 px wide, as phones do, and so is the PNG:
    checking the PNG's width catches such a page."""
    set_width(driver, width)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    set_width(driver, width, max(height, 200))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png = base64.b64decode(shot["data"])
    set_width(driver, width)
    if path is not None:
        path.write_bytes(png)
    return png


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


# --- a desk served with [web] ---------------------------------------------------------------------------


class WebDesk:
    """`maild serve` on a fresh data dir with LMTP and `[web]` on loopback, one desk `support` with
    auto-replies and one agent; customers' mail goes in over LMTP and what maild sends lands in the
    outgoing Maildir, where the links are read from as a customer's mail client would."""

    def __init__(self, workdir: Path, database_url: str = "", *, extra: str = "") -> None:
        self.data_dir = workdir / "data"
        database_url = database_url or f"sqlite:///{self.data_dir / 'maild.sqlite3'}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lmtp_port, self.web_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        web = f'[web]\nlisten = "127.0.0.1:{self.web_port}"\npublic_url = "{self.base_url}"\n'
        # maildctl's mail (an agent's reply) is sent by serve's outbox job: at once, not within 30 s.
        web += "[scheduler]\noutbox_seconds = 0.2\n"
        self.config = write_config(
            workdir / "maild.toml",
            self.data_dir,
            database_url,
            listen={"lmtp": f"127.0.0.1:{self.lmtp_port}"},
            extra=web + extra,
        )
        self.serve: Serve | None = None

    def ctl(self, *args: str, stdin: bytes | None = None) -> str:
        """`maildctl` (in this process, as tests/cli.py runs it: no start-up cost); its stdout."""
        return ok(ctl(self.config, *args, stdin=stdin))

    def setup(self, language: str = "") -> WebDesk:
        """`maildctl init`, the desk (in `language` when given) and its agent."""
        self.ctl("init")
        options = ["--language", language] if language else []
        self.ctl("desk", "add", "support", "--address", DESK_ADDRESS, "--pattern", "SUP-{{nr}}", *options)
        self.ctl("agent", "add", AGENT[0], "--name", AGENT[1], "--desk", "support")
        return self

    def start(self) -> WebDesk:
        self.serve = Serve(self.config).ready()
        return self

    def stop(self) -> None:
        if self.serve is not None:
            self.serve.stop()
            self.serve = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def mail_in(self, raw: bytes, sender: str, recipient: str = DESK_ADDRESS) -> None:
        """One mail over LMTP; returns once maild said it is taken (fsynced and spooled)."""
        client = LineClient(("127.0.0.1", self.lmtp_port))
        try:
            client.replies()
            client.command("LHLO browser.test")
            assert client.one(f"MAIL FROM:<{sender}>").startswith("250")
            assert client.one(f"RCPT TO:<{recipient}>").startswith("250")
            assert client.one("DATA").startswith("354")
            body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            body = re.sub(rb"(?m)^\.", b"..", body)  # dot-stuffing
            client.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n"))
            reply = client.command(".")[0]
            assert reply.startswith("250"), reply
        finally:
            client.close()

    def sent(self) -> list[EmailMessage]:
        """Every mail maild sent so far (the outgoing Maildir), oldest first."""
        folder = self.data_dir / "outgoing" / "new"
        paths = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns) if folder.exists() else []
        mails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]
        return [m for m in mails if isinstance(m, EmailMessage)]

    def links_to(self, address: str, count: int = 1) -> list[str]:
        """The ticket page links in the first `count` mails sent to `address`, waiting for them."""
        link = re.compile(re.escape(self.base_url) + r"/t/[A-Za-z0-9_-]+")

        def found() -> list[str]:
            mails = [m for m in self.sent() if address in str(m["To"])]
            urls = [link.findall(_plain_text(m)) for m in mails[:count]]
            return [u[0] for u in urls if u] if len(urls) >= count and all(urls) else []

        result: list[str] = wait_until(found, what=f"{count} mail(s) with a link to {address}")
        return result


def _plain_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return str(part.get_content()) if isinstance(part, EmailMessage) else ""


@pytest.fixture(name="web_desk")  # imported as web_desk_fixture
def web_desk_fixture(tmp_path: Path, database_url: str) -> Iterator[WebDesk]:
    """A running desk with `[web]` (see WebDesk); stopped after the test."""
    desk = WebDesk(tmp_path / "desk", database_url).setup().start()
    try:
        yield desk
    finally:
        if desk.serve is not None:
            desk.serve.kill()
