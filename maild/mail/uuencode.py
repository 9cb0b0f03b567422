"""uuencoded files: parts typed x-uuencode (with or without a `begin` line) and `begin 644 name … end`
blocks inside plain text, as old mailers, Outlook Express and some scanners still send them."""

from __future__ import annotations

import binascii
import re

UU_TYPES = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
# `begin 644 report.pdf` … `end`; the mode is octal, the name the rest of the line.
_BLOCK = re.compile(
    r"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]+?)[ \t]*\r?\n(.*?)^end[ \t]*$", re.DOTALL | re.MULTILINE
)


def uudecode_lines(text: str) -> bytes:
    """The bytes of uuencoded lines; a line that does not decode (a stray header, junk) is skipped."""
    out = bytearray()
    for line in text.splitlines():
        if not line.strip() or line.startswith("begin ") or line.strip() in ("end", "`"):
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            try:  # some encoders drop the trailing padding: the length byte says how much there is
                nbytes = (((ord(line[0]) - 32) & 63) * 4 + 5) // 3
                out += binascii.a2b_uu(line[:nbytes])
            except (binascii.Error, IndexError):
                continue
    return bytes(out)


def uu_blocks(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text without its uuencoded blocks, and each block's (name, bytes)."""
    if "begin " not in text:
        return text, []
    found: list[tuple[str, bytes]] = []

    def take(match: re.Match[str]) -> str:
        found.append((match.group(1).strip(), uudecode_lines(match.group(2))))
        return ""

    return _BLOCK.sub(take, text), found


def uu_name(text: str) -> str:
    """The name a `begin` line gives, or ""."""
    match = re.search(r"^begin[ \t]+[0-7]{3,4}[ \t]+(\S[^\r\n]*)", text, re.MULTILINE)
    return match.group(1).strip() if match else ""
