"""Screenshots of the customers' web pages for docs/screenshots/, taken in Debian's headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--languages en,de]

Runs a real `maild serve` with `[web]` on loopback in a throwaway folder, one desk per language
(`maildctl desk add --language`), makes a demo ticket the way customers and agents do (a mail with an
attachment over LMTP, an agent's answer with `maildctl ticket reply`, the customer's answer by mail), then
opens each page of PAGES at a desktop (1280 px) and a phone (390 px) width: `NAME-LANG-desktop.png` and
`NAME-LANG-phone.png`, whole pages. Each page is also checked with axe-core, and the script fails on a
serious or critical violation, as the tests do. Needs chromium and chromium-driver (scripts/test.sh
installs them) and the test dependencies (requirements.lock).

A new page is one line in PAGES: its name and how to reach its URL from the demo desk."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import (  # noqa: E402 (the checkout's tests/ on sys.path first)
    AGENT,
    DESK_ADDRESS,
    DESKTOP,
    PHONE,
    WebDesk,
    check_axe,
    missing_browser,
    open_page,
    screenshot,
    start_chromium,
)
from tests.daemon import wait_until  # noqa: E402

CUSTOMER = ("Alice Example", "alice@customer.example")
WIDTHS = {"desktop": DESKTOP, "phone": PHONE}


class Demo:
    """A desk with one ticket whose history has a customer's mail with an attachment, an agent's answer
    and the customer's reply; `link` is the customer's own link, read from the mail maild sent them."""

    def __init__(self, desk: WebDesk) -> None:
        self.desk = desk
        desk.ctl("desk", "set", "support", "--web-ratings", "--web-new-tickets")
        desk.mail_in(self._mail("Printer on floor 3 prints blank pages", FIRST, attach=True), CUSTOMER[1])
        [self.link] = desk.links_to(CUSTOMER[1])
        self.number = self._number()
        desk.ctl("ticket", "reply", self.number, "--as", AGENT[0], stdin=ANSWER.encode())
        desk.links_to(CUSTOMER[1], count=2)
        subject = f"Re: [{self.number}] Printer on floor 3 prints blank pages"
        desk.mail_in(self._mail(subject, FOLLOW_UP, reply_to="<demo-1@customer.example>"), CUSTOMER[1])
        # A customer's answer brings no mail back: wait until the pipeline has put it on the ticket.
        wait_until(lambda: len(self.show()["messages"]) >= 3, what="the customer's follow-up on the ticket")

    def show(self) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(self.desk.ctl("ticket", "show", self.number, "--json"))
        return shown

    def rate_url(self) -> str:
        """The rating page of the agent's answer, as its mail's "4" link opens it."""
        [answer] = [m["id"] for m in self.show()["messages"] if m["kind"] == "agent"]
        return f"{self.link}/rate/{answer}?score=4"

    def _number(self) -> str:
        [first] = self.desk.sent()[:1]
        subject = str(first["Subject"])
        return subject[subject.index("[") + 1 : subject.index("]")]

    def _mail(self, subject: str, text: str, *, attach: bool = False, reply_to: str = "") -> bytes:
        msg = EmailMessage()
        msg["From"] = f"{CUSTOMER[0]} <{CUSTOMER[1]}>"
        msg["To"] = DESK_ADDRESS
        msg["Subject"] = subject
        msg["Message-ID"] = f"<demo-{2 if reply_to else 1}@customer.example>"
        if reply_to:
            msg["In-Reply-To"] = reply_to
        msg.set_content(text)
        if attach:
            msg.add_attachment(PRINTER_LOG, maintype="text", subtype="plain", filename="printer-log.txt")
        return msg.as_bytes(policy=SMTP)


# One line per paragraph, as most mail clients send it (the page wraps it to the screen).
FIRST = (
    "Hello,\n\nsince this morning the printer on floor 3 prints blank pages. I have changed the toner "
    "cartridge and restarted it, but nothing changed. Its log is attached.\n\nBest regards,\nAlice\n"
)
ANSWER = (
    "Hello Alice,\n\nthank you for the log. The printer's drum unit is worn out; a technician will "
    "replace it tomorrow before noon. Until then, please print on the printer on floor 2.\n\nBob\n"
)
FOLLOW_UP = """Thank you, floor 2 works for now.

Alice
"""
PRINTER_LOG = b"2026-12-07 08:12:03 drum unit: end of life\n2026-12-07 08:12:04 page 1: blank\n"

# name -> the page's URL for a demo desk.
PAGES: dict[str, Callable[[Demo], str]] = {
    "ticket": lambda demo: demo.link,
    "rate": Demo.rate_url,
    "new": lambda demo: demo.desk.url("/new/support"),
    "my": lambda demo: demo.desk.url("/my"),
    "not-found": lambda demo: demo.desk.url("/t/" + "A" * 44),
}


def take(out: Path, languages: list[str]) -> list[Path]:
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="maild-screenshots-") as scratch:
        driver = start_chromium(Path(scratch) / "chromium-profile")
        try:
            for language in languages:
                desk = WebDesk(Path(scratch) / language).setup(language=language).start()
                try:
                    demo = Demo(desk)
                    for name, url_of in PAGES.items():
                        for label, width in WIDTHS.items():
                            open_page(driver, url_of(demo), width)
                            check_axe(driver)
                            path = out / f"{name}-{language}-{label}.png"
                            screenshot(driver, width, path)
                            written.append(path)
                finally:
                    desk.stop()
        finally:
            driver.quit()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--languages", default="en", help="comma-separated desk languages (default en)")
    args = parser.parse_args()
    problem = missing_browser()
    if problem is not None:
        print(f"screenshots: {problem}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path in take(args.out, [lang.strip() for lang in args.languages.split(",") if lang.strip()]):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
