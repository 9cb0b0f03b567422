"""Issue 18 end to end in a real headless Chromium, as customers use it (in English, and in Polish for
/new and /my): the link from the mail, a reply
with an attachment from the page, a rating from the link in the agent's mail (the link opens a
confirmation page; only its button stores), closing the ticket; then "My tickets" (a sign-in link by
mail) and a ticket opened with the web form. `maildctl ticket show --json` agrees after each step and
axe-core finds no serious or critical violation on any page shown. tests/test_web_browser.py has the
first look at the page; tests/browser.py the machinery."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import (
    AGENT,
    DESK_ADDRESS,
    PHONE,
    WebDesk,
    browser_fixture,  # noqa: F401 (the fixture `browser`)
    check_axe,
    open_page,
    text_of,
)
from tests.daemon import wait_until

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = pytest.mark.browser
ALICE = "alice@customer.example"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


def customer_mail(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{ALICE}>"
    msg["To"] = DESK_ADDRESS
    msg["Subject"] = subject
    msg["Message-ID"] = "<flow-1@customer.example>"
    msg.set_content("Hello,\n\nthe scanner on floor 2 jams on every page.\n\nAlice\n")
    return msg.as_bytes(policy=SMTP)


@pytest.fixture
def desk(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Any:
    """A desk with ratings and the web form on, in the language the test asks for (indirect param)."""
    language = getattr(request, "param", "en")
    made = WebDesk(tmp_path / "desk", database_url).setup(language)
    made.ctl("desk", "set", "support", "--web-ratings", "--web-new-tickets")
    made.start()
    try:
        yield made
    finally:
        if made.serve is not None:
            made.serve.kill()


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return str(part.get_content()) if part is not None else ""


def show(desk: WebDesk, number: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(desk.ctl("ticket", "show", number, "--json"))
    return shown


def submit(browser: WebDriver, form_css: str) -> None:
    browser.find_element("css selector", f"{form_css} button[type=submit]").click()
    wait_until(lambda: browser.execute_script("return document.readyState") == "complete", what="the page")
    check_axe(browser)


def test_reply_rate_and_close_from_the_page(browser: WebDriver, desk: WebDesk, tmp_path: Path) -> None:
    desk.mail_in(customer_mail("Scanner jams"), ALICE)
    [link] = desk.links_to(ALICE)
    number = re.findall(r"\[(SUP-\d+)\]", str(desk.sent()[0]["Subject"]))[0]
    desk.ctl("ticket", "reply", number, "--as", AGENT[0], stdin=b"Please clean the rollers.\n")
    wait_until(lambda: len(desk.links_to(ALICE, count=2)) == 2, what="the agent's reply")
    answer = next(plain_text(m) for m in desk.sent() if "rollers" in plain_text(m))
    rate_links = re.findall(r"\S+/rate/\d+\?score=\d", answer)
    assert len(rate_links) == 5  # one per score

    # Reply with an attachment, from the page.
    assert open_page(browser, link, PHONE) == 200
    check_axe(browser)
    browser.find_element("id", "reply-text").send_keys("Cleaned them, it still jams. Photo attached.")
    (tmp_path / "jam.png").write_bytes(PNG)
    browser.find_element("id", "reply-files").send_keys(str(tmp_path / "jam.png"))
    submit(browser, "form[action$='/reply']")

    def replied() -> list[dict[str, Any]]:
        return [m for m in show(desk, number)["messages"] if "still jams" in json.dumps(m)]

    [reply] = wait_until(replied, what="the page's reply on the ticket")
    assert reply["kind"] == "customer" and "jam.png" in json.dumps(reply)
    assert open_page(browser, link) == 200  # processed: the page shows it now, with its file
    assert "still jams" in text_of(browser) and "jam.png" in text_of(browser)

    # Rate the agent's reply from the mail's link: a confirmation page, then its button.
    four = next(url for url in rate_links if url.endswith("score=4"))
    assert open_page(browser, four) == 200
    check_axe(browser)
    assert all(not m.get("ratings") for m in show(desk, number)["messages"])  # the GET stored nothing
    browser.find_element("id", "comment").send_keys("Quick answer.")
    submit(browser, "form.rating")
    rated = [r for m in show(desk, number)["messages"] for r in m.get("ratings", [])]
    assert [(r["score"], r["comment"]) for r in rated] == [(4, "Quick answer.")]

    # Close the ticket.
    assert open_page(browser, link) == 200
    submit(browser, "form[action$='/close']")
    assert show(desk, number)["status"] == "closed"
    assert browser.find_elements("id", "reply-text") == []  # no reply form on a closed ticket


@pytest.mark.parametrize("desk", ["pl"], indirect=True)  # a desk whose customers read Polish
def test_my_tickets_and_a_new_ticket_from_the_web(browser: WebDriver, desk: WebDesk) -> None:
    # A new ticket with the web form.
    assert open_page(browser, desk.url("/new/support")) == 200
    check_axe(browser)
    assert browser.find_element("css selector", "html").get_attribute("lang") == "pl"
    assert "Nowe zgłoszenie" in text_of(browser)
    for field, value in (("address", DESK_ADDRESS), ("subject", "x"), ("text", "x")):
        browser.find_element("id", field).send_keys(value)  # the desk's own address: refused
    submit(browser, "form.form")  # the form again with its message, axe-checked too
    assert browser.find_element("id", "address").get_attribute("aria-invalid") == "true"
    assert json.loads(desk.ctl("ticket", "list", "--json")) == []
    for field in ("address", "subject", "text"):
        browser.find_element("id", field).clear()
    for field, value in (
        ("name", "Alice Example"),
        ("address", ALICE),
        ("subject", "Badge reader broken"),
        ("text", "My badge is refused at the side door since this morning."),
    ):
        browser.find_element("id", field).send_keys(value)
    submit(browser, "form.form")
    tickets = wait_until(lambda: json.loads(desk.ctl("ticket", "list", "--json")), what="the web ticket")
    assert [t["subject"] for t in tickets] == ["Badge reader broken"]
    [link] = desk.links_to(ALICE)  # its auto-reply carries the link

    # "My tickets": the sign-in link by mail lists it, and leads to its page.
    assert open_page(browser, desk.url("/my")) == 200
    check_axe(browser)
    browser.find_element("id", "address").send_keys(ALICE)
    submit(browser, "form.form")
    sign_in = wait_until(
        lambda: [u for m in desk.sent() for u in re.findall(r"\S+/my/\S+", plain_text(m))],
        what="the sign-in mail",
    )[0]
    assert open_page(browser, sign_in) == 200
    check_axe(browser)
    assert "Badge reader broken" in text_of(browser)
    assert "Moje zgłoszenia" in text_of(browser) and "Otwarty" in text_of(browser)
    browser.find_element("link text", tickets[0]["number"]).click()
    assert browser.current_url == link
    assert text_of(browser, ".status") == "Otwarty"  # the ticket page in the desk's language too
    assert "Wyślij odpowiedź" in text_of(browser)
