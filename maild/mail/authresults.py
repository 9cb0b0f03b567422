"""Authentication-Results (RFC 8601): did a trusted receiving MTA record a DKIM, SPF or DMARC failure?

Only headers whose authserv-id the admin trusts count: anyone can write an Authentication-Results header,
so the others are ignored entirely. DKIM counts as failed only when the same header has no `dkim=pass`
(a mail with one broken and one good signature is authenticated). The parser is a short hand-written one
because the PyPI `authres` package has not been released since 2019.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import Message

from maild.mail.automatic import read_headers

_WORD = re.compile(r'[^\s;=()"]+')
# Methods registered with IANA (and Microsoft's compauth): such a key starts a new result even without the
# ";" before it; other dot-less keys mid-result (Microsoft's `action=`, `reason=`) are its properties.
_METHODS = frozenset(
    {"arc", "auth", "bimi", "compauth", "dkim", "dkim-adsp", "dkim-atps", "dmarc", "dnswl", "domainkeys",
     "iprev", "rrvs", "sender-id", "smime", "spf", "vbr"}
)  # fmt: skip
_FAILED = {"dmarc": {"fail"}, "spf": {"fail"}, "dkim": {"fail", "permerror"}}
_SKIPPED_PROPERTIES = ("header.b=",)  # a prefix of the signature: noise in a message for people
_MAX = 200

Token = tuple[str, str]  # (kind, text): kind is ";", "=", "c" (comment) or "w" (word / quoted string)
EQ: Token = ("=", "=")


def _tokens(value: str) -> list[Token]:
    """RFC 5322 lexing: folding is whitespace, comments nest and quoted strings may hold ";" or "("."""
    out: list[Token] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch.isspace():
            i += 1
        elif ch in ";=":
            out.append((ch, ch))
            i += 1
        elif ch in "()":
            depth, j = 0, i
            while j < n:
                if value[j] == "\\":
                    j += 1
                elif value[j] == "(":
                    depth += 1
                elif value[j] == ")":
                    depth -= 1
                    if depth <= 0:
                        break
                j += 1
            out.append(("c", value[i + 1 : j]))  # an unclosed comment runs to the end
            i = j + 1
        elif ch == '"':
            j, buf = i + 1, []
            while j < n and value[j] != '"':
                j += value[j] == "\\"  # quoted-pair: keep the escaped character
                buf.append(value[j : j + 1])
                j += 1
            out.append(("w", "".join(buf)))
            i = j + 1
        else:
            match = _WORD.match(value, i)
            end = match.end() if match else i + 1  # never stall, whatever str.isspace and \s disagree on
            out.append(("w", value[i:end]))
            i = end
    return out


def _results(tokens: list[Token]) -> list[tuple[str, str, list[str]]]:
    """(method, result, notes) per resinfo; tolerant of missing ";" and of stray words such as `none`."""
    results: list[tuple[str, str, list[str]]] = []
    current: list[str] | None = None  # notes of the result being read
    k = 0
    while k < len(tokens):
        kind, text = tokens[k]
        if kind == ";":
            current = None  # properties after a ";" belong to no result
        elif kind == "c" and current is not None:
            current.append(text)
        elif kind == "w" and tokens[k + 1 : k + 2] == [EQ] and k + 2 < len(tokens):
            value_kind, value = tokens[k + 2]
            if value_kind == "w":
                k += 2
                key = text.lower()
                method = key.split("/", 1)[0]  # `dkim/1=pass`: a method version
                if (current is None and "." not in key) or method in _METHODS:
                    current = []
                    results.append((method, value.lower(), current))
                elif key == "reason" and current is not None:
                    current.append(value)  # words for people: no `reason=` needed
                elif current is not None and not (text + "=").lower().startswith(_SKIPPED_PROPERTIES):
                    current.append(f"{text}={value}")
        k += 1
    return results


def auth_failures(source: bytes | Message, trusted_authserv_ids: Iterable[str]) -> list[str]:
    """One line per DKIM/SPF/DMARC failure a trusted host recorded, e.g.
    "mx.example.com: dkim=fail (header.d=example.com)"; [] when none or no host is trusted. `source`: the
    raw mail, or its header block as read_headers parsed it."""
    return [line for _, _, line in _failures(source, trusted_authserv_ids)]


_DOMAIN_PROPERTIES = ("header.from=", "smtp.mailfrom=", "envelope-from=")


def forged_sender(
    source: bytes | Message, trusted_authserv_ids: Iterable[str], from_address: str
) -> list[str]:
    """The SPF and DMARC failures a trusted host recorded for the From address's domain: such a From is
    likely forged, and an automatic answer to it would be backscatter to an innocent address. A failure
    whose properties name another domain (SPF of a mailing list's envelope sender) does not count; one
    that names none does."""
    domain = from_address.rpartition("@")[2].strip().lower()
    found: list[str] = []
    for method, notes, line in _failures(source, trusted_authserv_ids):
        if method not in ("spf", "dmarc"):
            continue
        named = {
            note.split("=", 1)[1].rpartition("@")[2].strip().lower()
            for note in notes
            if note.lower().startswith(_DOMAIN_PROPERTIES)
        }
        if not named or domain in named:
            found.append(line)
    return found


def _failures(
    source: bytes | Message, trusted_authserv_ids: Iterable[str]
) -> list[tuple[str, list[str], str]]:
    """(method, notes, line) per DKIM/SPF/DMARC failure a trusted host recorded (see auth_failures)."""
    trusted = {t.strip().lower() for t in trusted_authserv_ids if t.strip()}
    if not trusted:
        return []
    failures: list[tuple[str, list[str], str]] = []
    headers = read_headers(source) if isinstance(source, bytes) else source
    for header in headers.get_all("Authentication-Results", []):
        tokens = _tokens(str(header))
        while tokens and tokens[0][0] == "c":  # CFWS may precede the authserv-id
            tokens.pop(0)
        # The authserv-id is the first word (an optional version number follows it, before the ";"). A
        # header without one (Exchange Online starts with `spf=fail`) names no host and cannot be trusted.
        if not tokens or tokens[0][0] != "w" or tokens[0][1].lower() not in trusted or tokens[1:2] == [EQ]:
            continue
        authserv_id = tokens[0][1]
        results = _results(tokens[1:])
        dkim_passed = any(method == "dkim" and result == "pass" for method, result, _ in results)
        for method, result, notes in results:
            if result not in _FAILED.get(method, ()) or (method == "dkim" and dkim_passed):
                continue
            details = "; ".join(" ".join(note.split()) for note in notes if note.strip())
            line = f"{authserv_id}: {method}={result}" + (f" ({details})" if details else "")
            failures.append((method, notes, line if len(line) <= _MAX else line[: _MAX - 1] + "…"))
    return failures


def authenticated_domains(source: bytes | Message, trusted_authserv_ids: Iterable[str]) -> set[str]:
    """The domains a trusted host recorded a DKIM pass (header.d) or a DMARC pass (header.from) for: the
    proof that a mail with no token of ours comes from its From domain (an agent's new mail to a desk)."""
    trusted = {t.strip().lower() for t in trusted_authserv_ids if t.strip()}
    found: set[str] = set()
    if not trusted:
        return found
    headers = read_headers(source) if isinstance(source, bytes) else source
    for header in headers.get_all("Authentication-Results", []):
        tokens = _tokens(str(header))
        while tokens and tokens[0][0] == "c":
            tokens.pop(0)
        if not tokens or tokens[0][0] != "w" or tokens[0][1].lower() not in trusted or tokens[1:2] == [EQ]:
            continue
        for method, result, notes in _results(tokens[1:]):
            if result != "pass" or method not in ("dkim", "dmarc"):
                continue
            wanted = "header.d=" if method == "dkim" else "header.from="
            found.update(
                note.split("=", 1)[1].rpartition("@")[2].strip().lower()
                for note in notes
                if note.lower().startswith(wanted)
            )
    return found
