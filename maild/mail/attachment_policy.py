"""Which attachments a desk keeps: filenames made safe, executables and scripts refused by default, the
desk's allowed extensions and size limit. A refused attachment is still recorded on its message with the
reason (and stays in the raw mail in the spool): refused, never silently lost. The customer is told too
(`refused_attachments` of the ticket_created and agent_reply templates: `for_customer`).

Sizes are in MB of 1,000,000 bytes, as the desk option `max_attachment_mb` is named and as customers'
systems mostly count; a size is shown rounded up to 0.1 MB, so a refused file never looks as large as the
limit."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

FILENAME_MAX = 255
MB = 1_000_000
REASON_MAX = 200  # the attachments.refused_reason column

# Run by a double click on some desktop: refused unless the desk lists the extension itself.
# fmt: off
EXECUTABLE_EXTENSIONS = frozenset({
    "exe", "com", "bat", "cmd", "scr", "pif", "cpl", "msi", "msp", "mst", "msc", "dll", "sys", "vbs", "vbe",
    "js", "jse", "mjs", "wsf", "wsc", "wsh", "ps1", "psm1", "psd1", "hta", "jar", "lnk", "reg", "scf", "inf",
    "sh", "bash", "zsh", "csh", "ksh", "command", "apk", "app", "dmg", "pkg", "deb", "rpm", "run", "elf",
    "iso", "img", "vhd", "xll", "gadget", "application",
})
# fmt: on
EXECUTABLE_TYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-dosexec",
        "application/vnd.microsoft.portable-executable",
        "application/x-executable",
        "application/x-elf",
        "application/x-mach-binary",
        "application/x-sh",
        "application/x-shellscript",
        "application/x-bat",
        "application/x-msi",
        "application/hta",
        "application/javascript",
        "text/javascript",
        "application/x-javascript",
        "text/vbscript",
        "application/java-archive",
    }
)
# Bidirectional overrides make "invoice\u202efdp.exe" show as "invoiceexe.pdf".
_INVISIBLE = {"Cc", "Cf"}


def sanitize_filename(name: str, content_type: str, *, fallback: str = "attachment") -> str:
    """A name safe to show and to save: no directories, no control or invisible characters, no leading dots,
    at most 255 characters with the extension kept; `fallback` plus an extension from the type when empty."""
    name = re.split(r"[/\\]", name)[-1]
    # Control characters (tab, line break) part words; invisible format characters (zero-width space,
    # bidi overrides) are dropped: "report\u200b.pdf" is "report.pdf", not "report .pdf".
    name = "".join(
        ch if unicodedata.category(ch) not in _INVISIBLE else " " if unicodedata.category(ch) == "Cc" else ""
        for ch in name
    )
    # Inner whitespace is the sender's ("Scan  2026 03.pdf" is the file they saved); only the ends go.
    name = name.strip().strip(". ").strip()
    if not name:
        guessed = mimetypes.guess_extension(content_type, strict=False) or ".bin"
        name = f"{fallback}{guessed}"
    if len(name) > FILENAME_MAX:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:  # keep the extension: it says what the file is
            name = f"{stem[: FILENAME_MAX - len(ext) - 1]}.{ext}"
        else:
            name = name[:FILENAME_MAX]
    return name


def extension_of(filename: str) -> str:
    _, dot, ext = filename.rpartition(".")
    return ext.lower() if dot else ""


def parse_extensions(value: str) -> frozenset[str]:
    """'pdf, .PNG;jpg' → {'pdf', 'png', 'jpg'}; empty → no restriction."""
    return frozenset(part.strip().lstrip(".").lower() for part in re.split(r"[,;\s]+", value) if part.strip())


def executable_kind(data: bytes) -> str | None:
    """What the bytes are, when they are a program whatever the name says."""
    if data[:4] == b"\x7fELF":
        return "ELF executable"
    if data[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce"):
        return "Mach-O executable"
    if data[:2] == b"MZ" and len(data) >= 0x40:
        offset = int.from_bytes(data[0x3C:0x40], "little")
        if data[offset : offset + 4] == b"PE\x00\x00":
            return "Windows executable"
    if data[:3] == b"#!/":
        return "script"
    return None


def format_mb(size: int) -> str:
    """Bytes as MB with one decimal, rounded up: 25,000,001 bytes are "25.1"."""
    tenths = -(-size // (MB // 10))
    return f"{tenths // 10}.{tenths % 10}"


# Why an attachment is refused, for customers: the code a desk's template can test, and default words.
TOO_LARGE, EXECUTABLE, TYPE_NOT_ALLOWED, OTHER = "too_large", "executable", "type_not_allowed", "other"


@dataclass(frozen=True)
class Upload:
    """A file a web form sent (the ticket page's reply, /new): checked by this policy like an attachment."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Refusal:
    """Why a desk refuses an attachment. `text` is the agents' wording, stored on the attachment row."""

    code: str  # TOO_LARGE | EXECUTABLE | TYPE_NOT_ALLOWED | OTHER
    text: str
    limit_mb: int | None = None  # TOO_LARGE: the desk's limit
    size_mb: str = ""  # TOO_LARGE: the file's size, e.g. "30.1"
    extension: str = ""  # without the dot; "" when the name has none
    allowed: tuple[str, ...] = ()  # TYPE_NOT_ALLOWED: the desk's extensions


def _allowed_list(allowed: Iterable[str], room: int) -> str:
    """The allowed extensions, as many as fit in `room` characters (the rest counted)."""
    names = sorted(allowed)
    shown = ", ".join(names)
    if len(shown) <= room:
        return shown
    kept: list[str] = []
    for name in names:
        rest = len(names) - len(kept) - 1
        if len(", ".join([*kept, name])) + len(f", … ({rest} more)") > room:
            break
        kept.append(name)
    return ", ".join([*kept, f"… ({len(names) - len(kept)} more)"])


def too_large(size: int, max_mb: int, extension: str = "") -> Refusal:
    shown = format_mb(size)
    return Refusal(
        TOO_LARGE, f"larger than the desk's limit of {max_mb} MB ({shown} MB)", max_mb, shown, extension
    )


def refusal_of(
    filename: str, content_type: str, data: bytes, *, allowed_extensions: str, max_mb: int
) -> Refusal | None:
    """Why the desk refuses this attachment, or None when it keeps it."""
    ext = extension_of(filename)
    allowed = parse_extensions(allowed_extensions)
    if len(data) > max_mb * MB:
        return too_large(len(data), max_mb, ext)
    kind = executable_kind(data)
    if kind is not None and ext not in allowed:
        named = f" (named .{ext})" if ext else ""
        return Refusal(EXECUTABLE, f"{kind} content refused{named}", extension=ext)
    if ext in EXECUTABLE_EXTENSIONS and ext not in allowed:
        return Refusal(EXECUTABLE, f"executable or script (.{ext}) refused", extension=ext)
    if content_type.lower() in EXECUTABLE_TYPES and ext not in allowed:
        return Refusal(EXECUTABLE, f"executable or script ({content_type}) refused", extension=ext)
    if allowed and ext not in allowed:
        shown = f".{ext}" if ext else "a file without extension"
        head = f"{shown} is not allowed on this desk (allowed: "
        text = f"{head}{_allowed_list(allowed, REASON_MAX - len(head) - 1)})"
        return Refusal(TYPE_NOT_ALLOWED, text, extension=ext, allowed=tuple(sorted(allowed)))
    return None


def refusal(
    filename: str, content_type: str, data: bytes, *, allowed_extensions: str, max_mb: int
) -> str | None:
    """Why the desk refuses this attachment (the agents' words), or None when it keeps it."""
    found = refusal_of(filename, content_type, data, allowed_extensions=allowed_extensions, max_mb=max_mb)
    return found.text if found is not None else None


_STORED = (
    (TOO_LARGE, re.compile(r"larger than the desk's limit of (?P<limit>\d+) MB \((?P<size>[\d.]+) MB\)")),
    (EXECUTABLE, re.compile(r".+ content refused(?: \(named \.(?P<ext>.*)\))?")),
    (EXECUTABLE, re.compile(r"executable or script \((?:\.(?P<ext>[^)]*)|[^)]*)\) refused")),
    (
        TYPE_NOT_ALLOWED,
        re.compile(
            r"(?:\.(?P<ext>\S*)|a file without extension) is not allowed on this desk "
            r"\(allowed: (?P<allowed>.*)\)"
        ),
    ),
)


def parse_refusal(text: str, filename: str = "") -> Refusal:
    """The Refusal a stored reason (refusal_of's text) stands for: the attachment rows keep only the text.
    A text of another kind is OTHER."""
    for code, pattern in _STORED:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        found = match.groupdict()
        ext = found.get("ext") or extension_of(filename)
        if code == TOO_LARGE:
            return Refusal(code, text, int(found["limit"]), found["size"], ext)
        if code == TYPE_NOT_ALLOWED:
            allowed = tuple(a for a in found["allowed"].split(", ") if a and not a.startswith("…"))
            return Refusal(code, text, extension=ext, allowed=allowed)
        return Refusal(code, text, extension=ext)
    return Refusal(OTHER, text, extension=extension_of(filename))


def customer_reason(found: Refusal) -> str:
    """Why, in words for the customer (the default of the templates; a desk may word each code its way)."""
    if found.code == TOO_LARGE:
        return f"it is {found.size_mb} MB, larger than the {found.limit_mb} MB we accept"
    if found.code == EXECUTABLE:
        return "we do not accept programs or scripts"
    if found.code == TYPE_NOT_ALLOWED:
        return "we accept only these types of file: " + ", ".join(f".{ext}" for ext in found.allowed)
    return "it could not be accepted"


class RefusedRow(Protocol):
    """What for_customer reads of an attachment row (storage.models.Attachment): read-only."""

    @property
    def filename(self) -> str: ...

    @property
    def refused_reason(self) -> str | None: ...


def for_customer(rows: Iterable[RefusedRow]) -> list[dict[str, Any]]:
    """The refused ones of `rows` as the templates' `refused_attachments`: {filename, code, reason (the
    default words), limit_mb, size_mb, extension, allowed}."""
    listed: list[dict[str, Any]] = []
    for row in rows:
        if row.refused_reason is None:
            continue
        listed.append(refusal_item(row.filename, parse_refusal(row.refused_reason, row.filename)))
    return listed


def refusal_item(filename: str, found: Refusal) -> dict[str, Any]:
    """One refused attachment as the templates (and maild.outbound.language.refusal_reason) take it."""
    return {
        "filename": filename,
        "code": found.code,
        "reason": customer_reason(found),
        "limit_mb": found.limit_mb if found.limit_mb is not None else "",
        "size_mb": found.size_mb,
        "extension": found.extension,
        "allowed": list(found.allowed),
    }


@dataclass(frozen=True)
class _SampleRow:
    filename: str
    refused_reason: str | None


def sample_refused_attachments() -> list[dict[str, Any]]:
    """One refused attachment of each kind, for trying a template (maild.outbound.templating)."""
    rows = [
        ("backup.zip", too_large(30_200_000, 25, "zip").text),
        (
            "setup.exe",
            refusal("setup.exe", "application/octet-stream", b"", allowed_extensions="", max_mb=25),
        ),
        ("notes.docx", refusal("notes.docx", "text/plain", b"", allowed_extensions="pdf,png", max_mb=25)),
        ("scan.tif", "refused for a reason of another kind"),
    ]
    return for_customer(_SampleRow(filename, reason) for filename, reason in rows)
