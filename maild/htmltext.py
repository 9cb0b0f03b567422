"""HTML in mail: readable plain text for mails without a text/plain part, and the sanitised HTML that is
the only form of it ever stored for display."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

_BLOCK = {
    "p",
    "div",
    "br",
    "tr",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "blockquote",
    "pre",
    "hr",
}
_SKIP = {"script", "style", "head", "title"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# `cid:` stays so inline images still point at their attachment (Attachment.content_id); everything that
# runs (script, event handlers, javascript: URLs, forms, iframes) goes. Styles are cut down to what changes
# how text reads, so a mail cannot overlay the page it is shown in.
_URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"cid"}
_ATTRIBUTES = {**nh3.ALLOWED_ATTRIBUTES, "*": {"style"}}
_STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font-weight",
    "font-style",
    "font-size",
    "text-decoration",
    "text-align",
}


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html, url_schemes=_URL_SCHEMES, attributes=_ATTRIBUTES, filter_style_properties=_STYLE_PROPERTIES
    )
