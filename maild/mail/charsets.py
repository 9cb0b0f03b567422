"""Text of mail in whatever charset it really is: labels Python lacks, labels that stand for a larger charset
than the sender wrote, undeclared 8-bit bytes, RFC 2047 encoded words, stray NULs and C1 controls."""

from __future__ import annotations

import binascii
import codecs
import re
from email import quoprimime
from email.header import decode_header

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
# in mail labelled gb2312, Microsoft's extensions of Shift_JIS and EUC-KR): tried after the label and UTF-8.
SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}


def decode_bytes(data: bytes, charset: str | None) -> str:
    superset = SUPERSETS.get(codec_name(charset)) if charset else None
    for candidate in (charset, "utf-8", superset):
        if candidate:
            try:
                return data.decode(candidate)
            except (LookupError, UnicodeDecodeError, ValueError):
                continue
    return data.decode("windows-1252", errors="replace")


def decode_raw(value: str) -> str:
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


def decode_8bit(text: str) -> str:
    """Undeclared 8-bit bytes (left as surrogates by the parser), run by run, as UTF-8 or windows-1252."""
    return _UNDECODED_RUN.sub(
        lambda run: decode_bytes(run.group().encode("ascii", "surrogateescape"), None), text
    )


def decode_words(text: str) -> str:
    """A display name as written → as shown: 8-bit bytes decoded, encoded words decoded (quoted or not,
    as clients do), whitespace between two of them dropped, and adjacent words in one charset decoded as
    one byte string (some encoders split a character between two words). A word that does not decode
    stays as written."""
    text = decode_8bit(text)
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
            out.append(decode_bytes(bytes(run), run_charset))
            if gap.strip():
                out.append(gap)
        else:
            out.append(gap)
        run, run_charset, pos = bytearray(data), charset, word.end()
    if run_charset:
        out.append(decode_bytes(bytes(run), run_charset))
    out.append(text[pos:])
    return "".join(out)


def codec_name(charset: str) -> str:
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError):
        return ""
