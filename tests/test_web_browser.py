"""The customers' ticket page in a real headless Chromium (issue 18): a customer mails the desk over LMTP,
the link in the auto-reply (read from the outgoing Maildir, as their mail client would) opens the ticket in
the browser after an agent answered with `maildctl ticket reply`; the history and the attachment are there,
the page and the 404 page have no serious or critical axe-core violation at desktop and phone width, and
screenshots of them can be taken (scripts/screenshots.py writes docs/screenshots/ with the same helpers).
And the axe check itself is no formality: a page with an unlabelled field and an image without text fails it.

Without Chromium these tests skip, saying so; in CI (MAILD_REQUIRE_SERVERS=1) they fail instead."""

from __future__ import annotations

import json
import re
import urllib.request
from email.message import EmailMessage
from email.policy import SMTP
from typing import TYPE_CHECKING

import pytest

from maild.outbound.language import customer_word
from tests.browser import (
    AGENT,
    DESK_ADDRESS,
    DESKTOP,
    PHONE,
    WebDesk,
    browser_fixture,  # noqa: F401 (the fixture `browser`)
    check_axe,
    open_page,
    png_size,
    screenshot,
    text_of,
    web_desk_fixture,  # noqa: F401 (the fixture `web_desk`)
)

if TYPE_CHECKING:  # selenium may be missing: the fixture `browser` then skips, saying so
    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = pytest.mark.browser
ALICE = "alice@customer.example"
PDF = b"%PDF-1.4 printer log\n" + bytes(range(256))
QUESTION = "The printer on floor 3 shows error 42 since Monday."
ANSWER = "Please switch it off and on again, Alice."


def customer_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{ALICE}>"
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = "Printer broken"
    msg["Message-ID"] = "<browser-1@customer.example>"
    msg["Date"] = "Mon, 07 Dec 2026 09:00:00 +0000"
    msg.set_content(f"Hello,\n\n{QUESTION}\n\nAlice\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="printer log.pdf")
    return msg.as_bytes(policy=SMTP)


def test_the_link_in_the_mail_opens_the_ticket_in_chromium(browser: WebDriver, web_desk: WebDesk) -> None:
    web_desk.mail_in(customer_mail(), ALICE)
    [link] = web_desk.links_to(ALICE)  # the auto-reply
    [number] = re.findall(r"\[(SUP-\d+)\]", str(web_desk.sent()[0]["Subject"]))
    web_desk.ctl("ticket", "reply", number, "--as", AGENT[0], stdin=f"{ANSWER}\n".encode())
    assert web_desk.links_to(ALICE, count=2) == [link, link]  # the answer carries the same link

    assert open_page(browser, link) == 200

    assert browser.find_element("css selector", "h1").text == "Printer broken"
    assert number in text_of(browser, ".facts")
    messages = browser.find_elements("css selector", "article.message")
    assert [m.find_element("css selector", ".author").text for m in messages] == ["You", AGENT[1]]
    assert QUESTION in messages[0].text and ANSWER in messages[1].text
    shown = json.loads(web_desk.ctl("ticket", "show", number, "--json"))
    assert text_of(browser, ".status") == customer_word(shown["status"], "en")
    [attachment] = messages[0].find_elements("css selector", ".attachments a")
    assert attachment.text == "printer log.pdf"
    with urllib.request.urlopen(str(attachment.get_attribute("href")), timeout=10) as download:
        assert download.read() == PDF
        assert download.headers["Content-Disposition"].startswith("attachment;")
    for width in (DESKTOP, PHONE):
        assert open_page(browser, link, width) == 200
        check_axe(browser)
        assert png_size(screenshot(browser, width))[0] == width


def test_the_not_found_page_in_chromium(browser: WebDriver, web_desk: WebDesk) -> None:
    for width in (DESKTOP, PHONE):
        assert open_page(browser, web_desk.url("/t/" + "A" * 44), width) == 404

        assert browser.find_element("css selector", "h1").text == "Not found"
        check_axe(browser)
        assert png_size(screenshot(browser, width))[0] == width


def test_check_axe_fails_on_serious_violations_and_names_them(browser: WebDriver) -> None:
    page = '<!DOCTYPE html><html lang="en"><title>t</title><main><input type="text"><img src="x.png"></main>'
    open_page(browser, "data:text/html," + page)

    with pytest.raises(AssertionError) as failed:
        check_axe(browser)

    assert "[critical] label:" in str(failed.value) and "[critical] image-alt:" in str(failed.value)
