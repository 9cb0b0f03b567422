"""Which attachments a desk keeps: filenames made safe, executables and scripts refused by default, the
desk's allowed extensions and size limit. A refused attachment is still recorded on its message with the
reason (and stays in the raw mail in the spool): refused, never silently lost."""

from __future__ import annotations

import mimetypes
import re
import unicodedata

FILENAME_MAX = 255

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
    name = " ".join(name.split()).strip(". ")
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


def refusal(
    filename: str, content_type: str, data: bytes, *, allowed_extensions: str, max_mb: int
) -> str | None:
    """Why the desk refuses this attachment, or None when it keeps it."""
    ext = extension_of(filename)
    allowed = parse_extensions(allowed_extensions)
    if len(data) > max_mb * 1024 * 1024:
        return f"larger than the desk's limit of {max_mb} MB ({len(data) / 1024 / 1024:.1f} MB)"
    kind = executable_kind(data)
    if kind is not None and ext not in allowed:
        return f"{kind} content refused" + (f" (named .{ext})" if ext else "")
    if ext in EXECUTABLE_EXTENSIONS and ext not in allowed:
        return f"executable or script (.{ext}) refused"
    if content_type.lower() in EXECUTABLE_TYPES and ext not in allowed:
        return f"executable or script ({content_type}) refused"
    if allowed and ext not in allowed:
        shown = f".{ext}" if ext else "a file without extension"
        return f"{shown} is not allowed on this desk (allowed: {', '.join(sorted(allowed))})"
    return None
