"""Header and MIME parameter decoding that never raises. The stdlib's header registry decodes RFC 2231
parameters (`filename*=iso-2022-jp''%1B%24B…`) by their label with errors="surrogateescape", which CJK,
UTF-16 and IDNA codecs answer with an exception, from inside the parser itself (the feed parser reads each
part's Content-Type). LENIENT_POLICY is policy.default with a header factory that repairs such values;
`parameter` reads a parameter from the raw header as mail clients do."""

from __future__ import annotations

import re
import urllib.parse
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry

from maild.mail.charsets import Hints, decode_bytes, decode_words

# `name*0*=`, `name*1=`, `name*=`, `name=`: a parameter section and its value, quoted or not.
_PARAM = re.compile(
    r"""(?P<name>[^\s=;*"]+)(?:\*(?P<section>\d+))?(?P<ext>\*)?\s*=\s*
        (?:"(?P<quoted>(?:[^"\\]|\\.)*)"?|(?P<token>[^;]*))""",
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR = re.compile(r'\\(["\\])')


def _params(value: str) -> dict[str, list[tuple[int, bool, str]]]:
    """Every parameter of a header value as its sections: (number, extended, text as written). A plain
    `name=` beside RFC 2231 forms of the same name is the fallback for old readers (`filename="resume.pdf";
    filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`): the RFC 2231 forms win, the plain one is dropped."""
    found: dict[str, list[tuple[int, bool, str]]] = {}
    plain: dict[str, tuple[int, bool, str]] = {}
    for match in _PARAM.finditer(value):
        text = match["quoted"] if match["quoted"] is not None else (match["token"] or "").strip()
        if match["quoted"] is not None:
            # Only \" and \\ are escapes: Outlook writes Windows paths with bare backslashes.
            text = _QUOTED_PAIR.sub(r"\1", text)
        name = match["name"].lower()
        if match["section"] is None and not match["ext"]:
            plain.setdefault(name, (0, False, text))
            continue
        section = int(match["section"]) if match["section"] else 0
        found.setdefault(name, []).append((section, bool(match["ext"]), text))
    for name, only in plain.items():
        found.setdefault(name, [only])
    return found


def _percent_bytes(text: str) -> bytes:
    """`%E4%BD%A0` → bytes; a broken escape (`%G1`, a lone `%`) stays as written."""
    return urllib.parse.unquote_to_bytes(text.encode("utf-8", "surrogateescape"))


def parameter(value: str, name: str, hints: Hints = ()) -> str | None:
    """The parameter `name` of a raw MIME header value, decoded: RFC 2231 (continuations, any charset,
    broken escapes), RFC 2047 words in a quoted value (Outlook, Thunderbird), raw 8-bit. None when
    absent; never raises."""
    value = value.replace("\r", "").replace("\n", "")
    sections = _params(value.partition(";")[2]).get(name.lower())
    if not sections:
        return None
    sections.sort(key=lambda section: section[0])
    charset: str | None = None
    data = bytearray()
    for index, (_, extended, text) in enumerate(sections):
        if extended:
            if index == 0 and text.count("'") >= 2:
                label, _, text = text.partition("'")
                text = text.partition("'")[2]
                charset = label or None
            data += _percent_bytes(text)
        else:
            data += text.encode("utf-8", "surrogateescape")
    if any(extended for _, extended, _ in sections):
        return decode_bytes(bytes(data), charset or "utf-8", hints)
    return decode_words(bytes(data).decode("utf-8", "surrogateescape"), hints)


def _repaired(value: str) -> str:
    """The value with every parameter written plainly (RFC 2231 `*=utf-8''…` of its lenient decoding)."""
    main, _, rest = value.partition(";")
    params = []
    for name in _params(rest):
        text = parameter(value, name) or ""
        params.append(f"{name}*=utf-8''{urllib.parse.quote(text.encode('utf-8', 'surrogatepass'), safe='')}")
    return "; ".join([main, *params])


class _LenientRegistry(HeaderRegistry):
    def __call__(self, name: str, value: str) -> BaseHeader:
        try:
            return super().__call__(name, value)
        except Exception:  # the stdlib's parse of a malformed value: repaired below, never raised
            pass
        for attempt in (_repaired(value), value.partition(";")[0], ""):
            try:
                return super().__call__(name, attempt)
            except Exception:
                continue
        return self["x-unparsable"]("x-unparsable", "")  # unstructured: cannot fail on ""


LENIENT_POLICY = policy.default.clone(header_factory=_LenientRegistry())
