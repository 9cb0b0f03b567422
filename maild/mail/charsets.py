"""Text of mail in whatever charset it really is: labels Python lacks, labels that stand for a larger charset
than the sender wrote, undeclared 8-bit bytes, RFC 2047 encoded words, stray NULs and C1 controls."""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Callable
from email import quoprimime
from email.header import decode_header

from maild.mail.detect import DETECT_MAX, guess_charset, plausibility
from maild.mail.iso2022jp import ISO2022JP_MS

# C1 controls (U+0080-U+009F) are never meant in mail text: they are windows-1252 bytes read as Latin-1
# (curly quotes, €, dashes), by the sender's software or by a Latin-1 label on windows-1252 text.
_C1_AS_CP1252 = {
    byte: bytes([byte]).decode("windows-1252")
    for byte in range(0x80, 0xA0)
    if byte not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # undefined in windows-1252
}


def clean_text(text: str) -> str:
    """Without NUL characters, which PostgreSQL text cannot hold and no reader needs, and with C1 controls
    read as the windows-1252 characters they stand for."""
    return text.replace("\x00", "").translate(_C1_AS_CP1252)


# Charset labels mail clients write that Python has no alias for (Thai and Hebrew Outlook, Java mailers,
# old Netscape and Mac clients). Registered as codecs, so RFC 2047 words in headers decode by them too.
_CHARSET_LABELS = {
    "windows-874": "cp874",
    "windows-31j": "cp932",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "iso-8859-8-i": "iso8859_8",
    "iso-8859-8-e": "iso8859_8",
    "iso-8859-6-i": "iso8859_6",
    "iso-8859-6-e": "iso8859_6",
    "x-gbk": "gbk",
    "gb_2312-80": "gb2312",
    "csgb2312": "gb2312",
    "x-euc-cn": "gb2312",
    "cn-big5": "big5",
    "x-x-big5": "big5",
    "windows-949": "cp949",
    "x-windows-949": "cp949",
    "x-mac-roman": "mac_roman",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-ce": "mac_latin2",
    **{f"x-cp125{n}": f"cp125{n}" for n in range(9)},
}


def _charset_label(name: str) -> codecs.CodecInfo | None:
    target = _CHARSET_LABELS.get(name.lower().replace("_", "-"))
    return codecs.lookup(target) if target else None


codecs.register(_charset_label)

# Labels that stand for a smaller charset than the one the sender's software really wrote (GBK characters
# in mail labelled gb2312, Microsoft's extensions of Shift_JIS, EUC-KR and ISO-2022-JP): tried after the
# label and UTF-8.
SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
    "iso2022_jp": ISO2022JP_MS,
    "iso2022_jp_1": ISO2022JP_MS,
    "iso2022_jp_2": ISO2022JP_MS,
    "iso2022_jp_ext": ISO2022JP_MS,
    "iso2022_jp_3": ISO2022JP_MS,
    "iso2022_jp_2004": ISO2022JP_MS,
}
# Labels whose text is, in practice, windows-1252 or mislabelled UTF-8: UTF-8 is tried first (valid UTF-8
# with 8-bit bytes is practically never Latin-1 text), then windows-1252 (what browsers do too, WHATWG).
_WESTERN = frozenset({"ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252", "utf-8"})
# Below this plausibility (maild.mail.detect) text read by a Western label is taken for another charset:
# GBK read as Latin-1 is "×ª·¢£ºÕûÌå", mostly symbols.
_IMPLAUSIBLE_MARGIN = 0.3  # another charset must read it clearly better
_PLAUSIBLE = 0.5  # a superset's reading at least this plausible is taken (real text scores about 1)
_HIGH_RUN = re.compile(rb"[\x80-\xff]{2,}")


def _paired_high_bytes(data: bytes) -> bool:
    """Whether 8-bit bytes come in runs, as in CJK, Cyrillic, Greek or Hebrew text, rather than one at a
    time among ASCII as Western accents do: only then is a Latin-1 label in doubt."""
    sample = data[:DETECT_MAX]
    high = sum(1 for byte in sample if byte >= 0x80)
    paired = sum(len(run) for run in _HIGH_RUN.findall(sample))
    return high >= 4 and paired >= 0.8 * high


# Charsets that write non-ASCII text in ASCII bytes.
_SEVEN_BIT = ("utf-7", "utf_7", "iso2022", "hz", "utf-16", "utf-32")


Hints = tuple[str, ...] | Callable[[], tuple[str, ...]]  # a callable: worked out only when needed


def decode_bytes(data: bytes, charset: str | None, hints: Hints = ()) -> str:
    """`data` as text, never raising: by its label (or the label's superset) when that decodes and is
    plausible, else UTF-8, else the charset the mail's hints and the detector point to."""
    codec = codec_name(charset) if charset else ""
    if data.isascii() and b"\x1b" not in data and not codec.startswith(_SEVEN_BIT):
        return data.decode("ascii")  # the common case, whatever the label
    if not codec.startswith(_SEVEN_BIT):
        if not codec and (b"\x1b$" in data or b"\x1b(" in data):
            return data.decode(ISO2022JP_MS, errors="replace")  # undeclared ISO-2022-JP (old Japanese MUAs)
        try:
            # Valid UTF-8 with 8-bit bytes is UTF-8 whatever the label says: text in another charset is
            # practically never valid UTF-8 (a web form or server that labels its UTF-8 koi8-r, latin-1).
            return data.decode("utf-8-sig")  # a leading byte order mark is no text
        except UnicodeDecodeError:
            pass
    if codec in _WESTERN or not codec:
        if codec and codec != "utf-8":
            # Latin-1 and ASCII labels mean windows-1252 (curly quotes, €); latin-9 is itself.
            text = data.decode("iso8859-15" if codec == "iso8859-15" else "windows-1252", errors="replace")
            if not _paired_high_bytes(data):
                return text
            guessed = _guessed(data, hints)
            return guessed if plausibility(guessed) > plausibility(text) + _IMPLAUSIBLE_MARGIN else text
        return _guessed(data, hints)
    return _labelled(data, charset or "", codec, hints)


def _labelled(data: bytes, charset: str, codec: str, hints: Hints) -> str:
    """By the label, else its superset (GB18030 for gb2312): the superset decodes nearly any bytes, so
    its reading must also be plausible (Big5 labelled gb2312 is not), else the hints and detector decide."""
    try:
        return data.decode(charset)
    except (LookupError, UnicodeDecodeError, ValueError):
        pass
    superset = SUPERSETS.get(codec)
    if superset:
        try:
            text = data.decode(superset)
        except (LookupError, UnicodeDecodeError, ValueError):
            text = ""
        # ISO-2022-JP's superset reads only what the label's escapes say: exact, not permissive.
        if text and (superset == ISO2022JP_MS or plausibility(text[:DETECT_MAX]) >= _PLAUSIBLE):
            return text
    return _guessed(data, hints, superset or codec)


def _guessed(data: bytes, hints: Hints, label: str = "") -> str:
    found = hints() if callable(hints) else hints
    return data.decode(guess_charset(data, (label, *found) if label else found), errors="replace")


def decode_raw(value: str, hints: Hints = ()) -> str:
    """A header the policy decoded to U+FFFD, decoded by hand: an encoded word by the superset of its
    label (GBK in a gb2312 word, as Foxmail writes), undeclared 8-bit as UTF-8 or windows-1252."""
    try:
        chunks = decode_header(value.replace("\r\n", ""))
    except Exception:
        return value
    return "".join(
        decode_bytes(
            chunk.encode("ascii", "surrogateescape") if isinstance(chunk, str) else chunk,
            None if isinstance(chunk, str) else charset,
            hints,
        )
        for chunk, charset in chunks
    )


# An encoded word (RFC 2047); a language (RFC 2231: `utf-8*de`) after the charset is dropped.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,75})(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_UNDECODED_RUN = re.compile("[\udc80-\udcff]+")


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            payload = payload.rstrip("=")  # padding is often wrong or missing: recomputed
            return binascii.a2b_base64(payload + "=" * (-len(payload) % 4))
        return quoprimime.header_decode(payload).encode("latin-1")
    except (binascii.Error, ValueError):
        return None


def decode_8bit(text: str, hints: Hints = ()) -> str:
    """Undeclared 8-bit bytes (left as surrogates by the parser) decoded with the whole value: the trail
    bytes of GBK, Big5 and Shift_JIS characters are often ASCII, so the value is one byte string."""
    if not _UNDECODED_RUN.search(text) and "\x1b" not in text:
        return text
    return decode_bytes(text.encode("utf-8", "surrogateescape"), None, hints)


def decode_words(text: str, hints: Hints = ()) -> str:
    """A display name as written → as shown: 8-bit bytes decoded, encoded words decoded (quoted or not,
    as clients do), whitespace between two of them dropped, and adjacent words in one charset decoded as
    one byte string (some encoders split a character between two words). A word that does not decode
    stays as written."""
    text = decode_8bit(text, hints)
    out: list[str] = []
    run, run_charset, pos = bytearray(), "", 0
    for word in _ENCODED_WORD.finditer(text):
        data = _word_bytes(word[2], word[3])
        if data is None:
            continue  # left in the text between words
        gap, charset = text[pos : word.start()], word[1].lower()
        if run_charset:
            if not gap.strip() and charset == run_charset:
                run += data
                pos = word.end()
                continue
            out.append(decode_bytes(bytes(run), run_charset, hints))
            if gap.strip():
                out.append(gap)
        else:
            out.append(gap)
        run, run_charset, pos = bytearray(data), charset, word.end()
    if run_charset:
        out.append(decode_bytes(bytes(run), run_charset, hints))
    out.append(text[pos:])
    return "".join(out)


def codec_name(charset: str) -> str:
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError):
        return ""
