"""RFC 3676 format=flowed: join the soft-wrapped lines of Thunderbird, Apple Mail and others back into
paragraphs, so the stored text reads like what its sender typed."""

from __future__ import annotations

SIGNATURE_SEPARATOR = "-- "  # never a soft break (RFC 3676 §4.3)


def _render(depth: int, content: str) -> str:
    return f"{'>' * depth} {content}" if depth else content


def unflow(text: str, *, delsp: bool = False) -> str:
    """A line ending in a space continues on the next line of the same quote depth (§4.2); the leading
    space of a space-stuffed line is removed (§4.4); with DelSp=yes the trailing space goes too (§4.1)."""
    lines: list[str] = []
    depth, paragraph = 0, None
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        line_depth = len(line) - len(line.lstrip(">"))
        content = line[line_depth:].removeprefix(" ")
        soft = content.endswith(" ") and content != SIGNATURE_SEPARATOR
        if soft and delsp:
            content = content[:-1]
        if paragraph is not None and line_depth != depth:
            # improperly flowed: a new depth ends the paragraph, and its soft space ends with it
            lines.append(_render(depth, paragraph.rstrip(" ")))
            paragraph = None
        paragraph, depth = (content if paragraph is None else paragraph + content), line_depth
        if not soft:
            lines.append(_render(depth, paragraph))
            paragraph = None
    if paragraph is not None:
        lines.append(_render(depth, paragraph.rstrip(" ")))
    return "\n".join(lines)
