"""ISO-2022-JP as Microsoft and Japanese MUAs write it (the CP50220 family): JIS X 0208 with the NEC
special characters (row 13: ①, ㈱, №) and the IBM extensions (rows 89-92), which Python's iso2022_jp
codecs refuse. Each double-byte run is converted to Shift_JIS and read as CP932, which has them all."""

from __future__ import annotations

import codecs
import re

ISO2022JP_MS = "x-maild-iso2022jp-ms"

# An escape sequence and the run of bytes it governs.
_RUN = re.compile(rb"(\x1b(?:\$[@B]|\$\(D|\$\([OPQ]|\([BJHI]|\.[AF]|N.))?([^\x1b]*)", re.DOTALL)
_DOUBLE = (b"\x1b$@", b"\x1b$B", b"\x1b$(O", b"\x1b$(P", b"\x1b$(Q")


def _jis_to_sjis(pairs: bytes) -> bytes:
    out = bytearray()
    for index in range(0, len(pairs) - 1, 2):
        j1, j2 = pairs[index], pairs[index + 1]
        if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
            out += b"?"
            continue
        s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
        s2 = j2 + 0x1F + (1 if j2 >= 0x60 else 0) if j1 % 2 else j2 + 0x7E
        out += bytes((s1, s2))
    return bytes(out)


def decode_iso2022jp_ms(data: bytes, errors: str = "strict") -> tuple[str, int]:
    parts: list[str] = []
    for match in _RUN.finditer(data):
        escape, run = match.group(1) or b"", match.group(2)
        if not escape and not run:
            continue
        if escape in _DOUBLE:
            run = run.replace(b"\r", b"").replace(b"\n", b"")  # a line break always returns to ASCII
            parts.append(_jis_to_sjis(run).decode("cp932", errors))
        elif escape == b"\x1b(I":
            parts.append(bytes(b | 0x80 for b in run).decode("cp932", errors))  # half-width katakana
        else:
            parts.append(run.decode("ascii", errors))
    return "".join(parts), len(data)


def _lookup(name: str) -> codecs.CodecInfo | None:
    if name.replace("_", "-") != ISO2022JP_MS:
        return None
    base = codecs.lookup("iso2022_jp")
    return codecs.CodecInfo(
        name=ISO2022JP_MS,
        encode=base.encode,
        decode=lambda data, errors="strict": decode_iso2022jp_ms(bytes(data), errors),
    )


codecs.register(_lookup)
