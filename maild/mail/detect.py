"""Which charset undeclared or mislabelled 8-bit text is really in: UTF-8 if it is valid UTF-8 (cheap, and
the most common truth), else the charset the rest of the mail points to (hints), else what a charset
detector and a plausibility score agree on. Only reached when the cheap strict decodes failed."""

from __future__ import annotations

import functools
import unicodedata

# The detector is slow on megabytes: it reads at most this much, and short text it cannot judge anyway
# (a 10-byte subject is GBK, EUC-KR and Big5 at once) is left to the hints and the score.
DETECT_MAX = 16_384
DETECT_MIN = 16
# The candidates are scored on a shorter sample: a few hundred characters tell mojibake from text.
SCORE_MAX = 2_048
# Charsets real mail software writes undeclared 8-bit text in, as the supersets MUAs read them by.
MAIL_CHARSETS = (
    "gb18030",
    "big5hkscs",
    "cp932",
    "euc_jp",
    "cp949",
    "koi8_r",
    "koi8_u",
    "cp1251",
    "cp1252",
    "cp1250",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "iso8859_7",
)
_LATIN = frozenset({"cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "latin_1", "iso8859_2", "iso8859_15"})
_HINT_BONUS = 0.8  # a charset the mail names elsewhere wins a close call
_DETECTOR_BONUS = 0.3
_USUAL_BONUS = 0.1  # undeclared 8-bit Western text is windows-1252 far more often than its neighbours

_SCRIPTS = (
    ("CJK", "han"),
    ("HIRAGANA", "kana"),
    ("KATAKANA", "kana"),
    ("HANGUL", "hangul"),
    ("CYRILLIC", "cyrillic"),
    ("GREEK", "greek"),
    ("HEBREW", "hebrew"),
    ("ARABIC", "arabic"),
    ("THAI", "thai"),
    ("LATIN", "latin"),
)
# Scripts that share words in real text: Japanese writes kanji with kana, Korean (rarely) hanja.
_COMPATIBLE = {frozenset({"han", "kana"})}


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    if "HALFWIDTH KATAKANA" in name or name.startswith("HANGUL LETTER"):
        # Halfwidth kana and lone Hangul jamo: what KOI8, Latin or EUC-JP bytes read as CJK look like.
        return "unlikely"
    for prefix, script in _SCRIPTS:
        if prefix in name:
            return script
    return "other"


@functools.lru_cache(maxsize=8192)
def _common_han(char: str) -> bool:
    """In the first (most used) level of GB2312, Big5 or JIS X 0208."""
    for codec, low, high in (("gb2312", 0xB0, 0xD7), ("big5", 0xA4, 0xC6), ("cp932", 0x88, 0x98)):
        try:
            lead = char.encode(codec)[0]
        except UnicodeEncodeError:
            continue
        if low <= lead <= high:
            return True
    return False


def _char_score(char: str, prev: str, prev_script: str) -> tuple[float, str]:
    """How much one non-ASCII character looks like real text, and its script."""
    category = unicodedata.category(char)
    script = _script(char)
    if (category[0] in "CM" and category != "Mn") or script == "unlikely":
        return -2.0, script
    if category in ("Sc", "So", "Nd") or char in "±°":
        return 0.0, script  # €, ™, ©, °: common in any Western text
    if (category[0] in "SN" and ord(char) < 0x100) or category in ("Sm", "Sk", "Lm"):
        return -1.0, script  # ×, ¨, ¹, ¾: what multibyte text read as Latin-1 is full of
    if category[0] != "L":
        return 0.0, script  # punctuation: fullwidth comma, guillemets, dashes
    score = 1.0
    if script == "han" and not _common_han(char):
        score = 0.3  # rare ideographs: what bytes of another CJK charset mostly decode to
    elif script == "kana":
        score = 1.3
    if script == "latin" and not prev.isascii() and prev_script == "latin":
        score = 0.0  # accented Latin letters sit among ASCII letters; long runs of them are another charset
    if category == "Lu" and prev.isalpha():
        score = -0.5  # "иВАН": KOI8-R read as windows-1251 (or back) swaps the cases
    mixed = prev_script not in ("", script) and prev.isalpha()
    if mixed and frozenset({script, prev_script}) not in _COMPATIBLE:
        score -= 2.0  # Hangul beside Han, Cyrillic beside Greek: one text, one script
    return score, script


def plausibility(text: str) -> float:
    """Mean score of the non-ASCII characters: about 1 for real text, low or negative for mojibake."""
    total, count, prev, prev_script = 0.0, 0, " ", ""
    for char in text:
        if char.isascii():
            prev, prev_script = char, ("latin" if char.isalpha() else "")
            continue
        score, script = _char_score(char, prev, prev_script)
        total, count, prev, prev_script = total + score, count + 1, char, script
    return total / count if count else 1.0


def _detected(sample: bytes) -> str | None:
    if len(sample) < DETECT_MIN:
        return None
    # Imported on first use: most mails never need it, and every maildctl command would pay its import.
    from charset_normalizer import from_bytes

    try:
        best = from_bytes(sample, cp_isolation=list(MAIL_CHARSETS)).best()
    except Exception:  # the detector is not ours: it must not take the mail down
        return None
    return best.encoding if best is not None else None


def _strict(sample: bytes, charset: str, *, cut: bool) -> str | None:
    """`sample` decoded strictly, or None; a multibyte character cut at the end of a sample cut from
    longer data does not rule a charset out."""
    for end in (len(sample), len(sample) - 1, len(sample) - 2, len(sample) - 3) if cut else (len(sample),):
        try:
            return sample[:end].decode(charset)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return None


def guess_charset(data: bytes, hints: tuple[str, ...] = ()) -> str:
    """The charset to read `data` by (undeclared, or its label failed or was wrong): UTF-8 when it is
    valid, else the most plausible strict decode among the hints, the detector's answer and MAIL_CHARSETS."""
    sample = data[:DETECT_MAX]
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3 and len(data) > DETECT_MAX:
            return "utf-8"  # only the character cut at the sample's end
    detected = _detected(sample)
    bonus: dict[str, float] = {"cp1252": _USUAL_BONUS}
    for hint in hints:
        bonus.setdefault(hint, _HINT_BONUS)
    if detected and detected not in _LATIN:  # between Latin code pages it guesses; windows-1252 is usual
        bonus[detected] = bonus.get(detected, 0.0) + _DETECTOR_BONUS
    best, best_score = "windows-1252", -99.0
    for candidate in dict.fromkeys((*bonus, *MAIL_CHARSETS)):
        text = _strict(sample[:SCORE_MAX], candidate, cut=len(data) > SCORE_MAX)
        if text is None:
            continue
        score = plausibility(text) + bonus.get(candidate, 0.0)
        if score > best_score:
            best, best_score = candidate, score
    return best
