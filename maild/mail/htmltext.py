"""HTML in mail: readable plain text for mails without a text/plain part, and the sanitised HTML that is
the only form of it ever stored for display."""

from __future__ import annotations

import re
from html import escape
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


# Marks the lines of a <blockquote> while extracting; turned into "> " per line at the end.
_QUOTE_START, _QUOTE_END = "\x02", "\x03"


class _TextExtractor(HTMLParser):
    def __init__(self, quote_marks: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.preformatted = 0
        self.quote_marks = quote_marks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")  # cells of a row stay apart: "Order 4711", not "Order4711"
        if tag == "pre":
            self.preformatted += 1
        if tag == "li":
            self.parts.append("- ")
        if tag == "blockquote" and self.quote_marks:
            self.parts.append(_QUOTE_START)

    def handle_endtag(self, tag: str) -> None:
        if tag == "blockquote" and self.quote_marks:
            self.parts.append(_QUOTE_END)  # before the line break: the quote's last line is in it
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK and tag != "br":  # <br/> is one line break, not two
            self.parts.append("\n")
        if tag == "pre":
            self.preformatted = max(0, self.preformatted - 1)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        # A pasted log or code in <pre> keeps its lines.
        self.parts.append(
            data.replace("\r\n", "\n") if self.preformatted else re.sub(r"[ \t\r\n]+", " ", data)
        )


def html_to_text(html: str, *, quote_marks: bool = False) -> str:
    """Readable text of HTML. `quote_marks`: lines inside <blockquote> start with "> " per level, as a
    text/plain mail writes quotes, so the quote trimmer tells a reply written between quoted lines from
    the quote (an incoming HTML-only mail); off for maild's own templates."""
    html = html.replace(_QUOTE_START, "").replace(_QUOTE_END, "")
    parser = _TextExtractor(quote_marks)
    parser.feed(html)
    parser.close()
    lines, depth = [], 0
    for line in "".join(parser.parts).splitlines():
        opened, closed = line.count(_QUOTE_START), line.count(_QUOTE_END)
        level = depth + opened  # a line that opens a quote is in it
        depth = max(0, depth + opened - closed)
        text = line.replace(_QUOTE_START, "").replace(_QUOTE_END, "").strip()
        lines.append(f"{'> ' * level}{text}".rstrip() if level and text else text)
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


# html5ever (under nh3) scans its stack of open elements at each of these start tags: time quadratic in
# their nesting depth (100,000 nested <div>s took 40 s). No mail nests them that deep; such HTML is kept as
# its text.
_STACK_SCANNING = re.compile(
    r"<(/?)(?:div|blockquote|section|article|aside|nav|header|footer|main|address|center|details|dialog"
    r"|dir|dl|fieldset|figcaption|figure|hgroup|menu|ol|ul|pre|listing|summary|search)\b",
    re.IGNORECASE,
)
MAX_BLOCK_DEPTH = 500


def _block_depth(html: str) -> int:
    depth = deepest = 0
    for match in _STACK_SCANNING.finditer(html):
        depth = max(0, depth - 1) if match.group(1) else depth + 1
        deepest = max(deepest, depth)
    return deepest


def sanitize_html(html: str) -> str:
    if _block_depth(html) > MAX_BLOCK_DEPTH:
        return f"<pre>{escape(html_to_text(html))}</pre>"
    return nh3.clean(
        html, url_schemes=_URL_SCHEMES, attributes=_ATTRIBUTES, filter_style_properties=_STYLE_PROPERTIES
    )
