"""Address normalisation shared by routing, identification and the CLI."""

from __future__ import annotations

import re
from collections.abc import Iterator

_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$|^[^@\s]+@localhost$")


def normalize(address: str) -> str:
    return address.strip().strip("<>").lower()


def base_address(address: str) -> str:
    """support+token@example.com → support@example.com (subaddress dropped, lower-cased)."""
    local, at, domain = normalize(address).rpartition("@")
    if not at:
        return normalize(address)
    return f"{local.split('+', 1)[0]}@{domain}"


def is_valid(address: str) -> bool:
    return bool(_ADDRESS.match(address.strip()))


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


# --- address headers as mail clients write them --------------------------------------------------------
#
# RFC 5322 wants specials ([ ] , . : ; @) in a display name quoted. Corporate gateways, Lotus Notes and
# sloppy scripts do not quote them (`John Doe [ACME] <john@acme.test>`, `Doe, John <john@acme.test>`,
# `Hans Meier/DE/ACME@ACME <hans@acme.test>`), and the stdlib then reads no address or the wrong one.
# Mail clients show such senders without complaint, so we read them as the clients do: an angle-addr
# ends a mailbox and everything since the previous one is its display name; only text without an
# angle-addr is searched for bare addresses (`john@acme.test (John Doe)`, `a@x.test, b@y.test`).

MAX_COMMENT_DEPTH = 100  # no client nests comments; deeper is an attack on a recursive reader

# A run of ordinary characters: not whitespace, not a special this reader acts on. An encoded word opens a
# word (RFC 2047) and is read whole there: a sloppy encoder leaves commas in it.
_RUN = re.compile(r'[^\s"(),<>\\]+')
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,75}\?[bBqQ]\?[^?\s]*\?=")
_QUOTED_END = re.compile(r'["\\]')
_COMMENT_STOP = re.compile(r"[()\\]")
_ANGLE_STOP = re.compile(r'[>"(\s]')


class TooDeep(ValueError):
    """Comments in an address header nested deeper than MAX_COMMENT_DEPTH."""


class _Piece:
    """What lies between two boundaries (a top-level comma, the end of an angle-addr). Its words (split
    at whitespace and comments; a quoted string is part of a word) are kept in flat lists of strings,
    which cost the garbage collector nothing however many there are."""

    __slots__ = ("angle", "comments", "raws", "texts", "with_at")

    def __init__(self) -> None:
        self.raws: list[str] = []  # each word as written, quotes and escapes kept
        self.texts: list[str] = []  # as shown: quotes and escapes removed
        self.with_at: list[int] = []  # words with an "@" outside quotes: an address, or `John@ACME`
        self.comments: list[str] = []
        self.angle: str | None = None  # the angle-addr that ended the piece, without < >

    def add_word(self, raw: list[str], text: list[str], at: bool) -> None:
        if at:
            self.with_at.append(len(self.raws))
        self.raws.append("".join(raw))
        self.texts.append("".join(text))

    @property
    def phrase(self) -> str:
        return " ".join(self.texts)

    def bare_addresses(self) -> list[str]:
        return [a for a in (_bare(self.raws[i]) for i in self.with_at) if a]


def _until(value: str, pos: int, stops: re.Pattern[str], parts: list[str]) -> re.Match[str] | None:
    """The next of `stops` from `pos`, the text before it added to `parts`; None at the end of `value`
    (the rest added): a quoted string, comment or angle-addr left open ends with the header."""
    stop = stops.search(value, pos)
    parts.append(value[pos : stop.start()] if stop is not None else value[pos:])
    return stop


def _quoted(value: str, start: int) -> tuple[str, int]:
    """The text of the quoted string opening at `start` (a missing closing quote ends it at the end)."""
    parts: list[str] = []
    pos = start + 1
    while (stop := _until(value, pos, _QUOTED_END, parts)) is not None:
        if stop.group() == '"':
            return "".join(parts), stop.end()
        parts.append(value[stop.end() : stop.end() + 1])  # a quoted-pair stands for its character
        pos = stop.end() + 1
    return "".join(parts), len(value)


def _comment(value: str, start: int) -> tuple[str, int]:
    """The text of the comment opening at `start`, nested comments included; iterative, and bounded."""
    parts: list[str] = []
    depth, pos = 1, start + 1
    while depth:
        stop = _until(value, pos, _COMMENT_STOP, parts)
        if stop is None:
            return "".join(parts), len(value)
        char, pos = stop.group(), stop.end()
        if char == "\\":
            parts.append(value[pos : pos + 1])
            pos += 1
        elif char == "(":
            depth += 1
            if depth > MAX_COMMENT_DEPTH:
                raise TooDeep(f"comments nested more than {MAX_COMMENT_DEPTH} deep")
            parts.append(char)
        else:
            depth -= 1
            if depth:
                parts.append(char)
    return "".join(parts), pos


def _angle(value: str, start: int) -> tuple[str, int]:
    """The addr-spec of the angle-addr opening at `start`: whitespace and comments dropped, quoted local
    parts kept. A missing ">" ends it at the end of the header."""
    parts: list[str] = []
    pos = start + 1
    while (stop := _until(value, pos, _ANGLE_STOP, parts)) is not None:
        char = stop.group()
        if char == ">":
            return "".join(parts), stop.end()
        if char == '"':
            text, pos = _quoted(value, stop.start())
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif char == "(":
            pos = _comment(value, stop.start())[1]
        else:
            pos = stop.end()
    return "".join(parts), len(value)


def _scan(value: str) -> Iterator[_Piece]:
    """The pieces, one at a time: a header of a million commas leaves no million objects behind (the
    garbage collector's passes over them would make the work grow faster than the header)."""
    piece = _Piece()
    raw: list[str] = []  # the word being read
    text: list[str] = []
    at = False
    pos, size = 0, len(value)
    while pos <= size:
        char = value[pos] if pos < size else ","  # the end of the header ends the last piece
        if char.isspace() or char in "(<,>":
            if raw:
                piece.add_word(raw, text, at)
                raw, text, at = [], [], False
            if char == "(":
                comment, pos = _comment(value, pos)
                piece.comments.append(comment)
                continue
            if char in "<,":
                if char == "<":
                    piece.angle, pos = _angle(value, pos)
                else:
                    pos += 1
                if piece.raws or piece.comments or piece.angle is not None:
                    yield piece
                    piece = _Piece()
                continue
            pos += 1  # whitespace, or a stray ">" (`<a@b.test>>`), which means nothing
        elif char == '"':
            quoted, end = _quoted(value, pos)
            raw.append(value[pos:end])
            text.append(quoted)
            pos = end
        else:
            run = _ENCODED_WORD.match(value, pos) if char == "=" and not raw else None
            run = run or _RUN.match(value, pos)
            chunk = run.group() if run is not None else char  # no run: a "\\" outside quotes
            raw.append(chunk)
            text.append(chunk)
            at = at or "@" in chunk
            pos += len(chunk)


def _addr_spec(text: str) -> str:
    """An address as found, made usable: `mailto:` and a source route (`@relay:`) dropped, the trailing
    dot of an absolute domain (`acme.test.`) dropped; "" unless both parts are there."""
    text = text.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    if text.startswith("@") and ":" in text:
        text = text.rpartition(":")[2]
    local, at, domain = text.rpartition("@")
    domain = domain.rstrip(".")
    return f"{local}@{domain}" if at and local and domain else ""


def _bare(word: str) -> str:
    """The address a word outside an angle-addr names: a group's name (`Team:`) and end (`;`) dropped."""
    raw = word.strip(";,")
    if ":" in raw and '"' not in raw:
        raw = raw.rpartition(":")[2]
    return _addr_spec(raw)


def _last_resort(value: str) -> list[tuple[str, str]]:
    """An address anywhere in a header the reader found none in (an unclosed quote swallowed it)."""
    angle = re.search(r"<([^<>@]*@[^<>]*)>?", value)
    if angle is not None:
        address = _addr_spec(angle.group(1).strip())
        name = " ".join(value[: angle.start()].replace('"', " ").split())
        return [(name, address)] if address else []
    for token in value.split():
        address = _addr_spec(token.strip("\"'<>()[],;:"))
        if address:
            return [("", address)]
    return []


def split_mailboxes(value: str) -> list[tuple[str, str]]:
    """(display name, address) of each mailbox in an address header's raw value, as mail clients read it.

    Names are as written (encoded words and 8-bit bytes not decoded), addresses not lower-cased. An
    angle-addr without an address (`"Doe, John" <>`) gives ("Doe, John", ""). Never raises, except
    TooDeep for comments nested beyond any client's habit."""
    value = value.replace("\r", "").replace("\n", "")
    found: list[tuple[str, str]] = []
    pending: list[str] = []  # text before a comma that named no address: `Doe, John <john@acme.test>`
    for piece in _scan(value):
        phrase, comments = piece.phrase, " ".join(piece.comments)
        if piece.angle is not None:
            address = _addr_spec(piece.angle)
            if not address:  # `john@acme.test <>`: the address the phrase names, if any
                address = next(iter(piece.bare_addresses()), "")
            name = ", ".join([*pending, phrase]) if phrase else ", ".join(pending)
            found.append((name or comments, address))
            pending = []
            continue
        addresses = piece.bare_addresses()
        if addresses:
            found.extend((_bare_name(piece, comments) if len(addresses) == 1 else "", a) for a in addresses)
            pending = []
        elif phrase:
            pending.append(phrase)
        elif found and not found[-1][0]:  # `<olga@acme.test> (Olga Orr)`: the comment names the mailbox
            found[-1] = (comments, found[-1][1])
    if not any(address for _, address in found) and "@" in value:
        return _last_resort(value) or found
    return found


def _bare_name(piece: _Piece, comments: str) -> str:
    """The name beside one bare address: the other words (a group's name not), else the comments."""
    skip = set(piece.with_at)
    words = [
        (raw, text)
        for i, (raw, text) in enumerate(zip(piece.raws, piece.texts, strict=True))
        if i not in skip
    ]
    for index, (raw, _) in enumerate(words):
        if raw.endswith(":"):
            words = words[index + 1 :]
            break
    return " ".join(text for _, text in words) or comments
