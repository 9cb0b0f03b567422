"""The command block at the top of an agent's reply (`#status waiting`, `#priority high`, …).

Pure parsing: no database. Names (agents, canned replies, ticket numbers) are kept as text and resolved by
whoever applies the commands.

What counts as a command line: after leading whitespace, `#` directly followed by a letter, then the
command's name (letters, digits, `_`, `-`) and either the end of the line or whitespace and an argument.
So `#1 priority`, `# heading` and `#!` are text, and end the block; `#stauts waiting` is a command line
with an unknown name, which is an error rather than text: a typo must never reach the customer.

The block: leading blank lines are skipped, command lines and blank lines between them are the block, the
first other line ends it. A `#word` line after that is text. `body` is everything after the block.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from maild.mail.addresses import is_valid, normalize
from maild.storage.models import PRIORITIES, TICKET_STATUSES
from maild.tickets.statuses import normalise_status

# --- the commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line_number: int  # 1-based, in the text given to parse_commands: for "line 3: …" errors when applied


@dataclass(frozen=True)
class StatusCommand(Command):
    status: str


@dataclass(frozen=True)
class PriorityCommand(Command):
    priority: str


@dataclass(frozen=True)
class AssignCommand(Command):
    agent: str  # an email or a name, as written: resolved against the agents later


@dataclass(frozen=True)
class TagCommand(Command):
    tag: str


@dataclass(frozen=True)
class UntagCommand(Command):
    tag: str


@dataclass(frozen=True)
class CcCommand(Command):
    action: str  # "add" or "remove"
    address: str  # normalised: lower-case, no angle brackets


@dataclass(frozen=True)
class NoteCommand(Command):
    pass


@dataclass(frozen=True)
class CloseCommand(Command):
    pass


@dataclass(frozen=True)
class MergeCommand(Command):
    number: str  # the other ticket's number, as written


@dataclass(frozen=True)
class CannedCommand(Command):
    name: str


@dataclass(frozen=True)
class TimeCommand(Command):
    minutes: int


@dataclass(frozen=True)
class SendCommand(Command):
    pass


@dataclass(frozen=True)
class CommandError:
    line_number: int  # 1-based
    line: str  # the line as written (without its line ending)
    problem: str


@dataclass
class ParsedReply:
    commands: list[Command] = field(default_factory=list)
    body: str = ""
    errors: list[CommandError] = field(default_factory=list)
    is_note: bool = False


class _Bad(Exception):
    """One command line's problem; becomes a CommandError."""


# --- argument checks ------------------------------------------------------------------------------

_COMMAND_LINE = re.compile(r"#([A-Za-z][A-Za-z0-9_-]*)(?:\s+(.*))?")
# A tag, by mail (`#tag`) and in maildctl: \w is letters and digits of any script, and _
TAG_PATTERN = re.compile(r"[\w.:/-]{1,100}")
CANNED_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")  # also what `maildctl canned add` accepts
MAX_MINUTES = 24 * 60
_DURATION_EXAMPLES = "e.g. 25m, 1h, 1h30m, 1.5h, 90 (minutes), 0:45"
# 1h30m, 1.5h, 25m, 2 h 5 min; 1,5h for the decimal comma a European mail client's user types.
_HOURS_MINUTES = re.compile(
    r"(?:(?P<h>\d+(?:[.,]\d+)?)\s*(?:h|hr|hrs|hours?))?\s*(?:(?P<m>\d+)\s*(?:m|min|mins|minutes?))?"
)
_CLOCK = re.compile(r"(?P<h>\d+):(?P<m>[0-5]\d)")


def parse_duration(text: str) -> int:
    """Minutes in `text` (see _DURATION_EXAMPLES); ValueError with the reason when it is not one."""
    value = text.strip().lower()
    minutes: float
    if value.isdigit():
        minutes = int(value)
    elif clock := _CLOCK.fullmatch(value):
        minutes = int(clock["h"]) * 60 + int(clock["m"])
    elif (match := _HOURS_MINUTES.fullmatch(value)) and (match["h"] or match["m"]):
        hours = float(match["h"].replace(",", ".")) if match["h"] else 0.0
        minutes = hours * 60 + (int(match["m"]) if match["m"] else 0)
    else:
        raise ValueError(f"{text!r} is not a duration ({_DURATION_EXAMPLES})")
    whole = round(minutes)  # 0.33h is 19.8 minutes: time tracking is by the minute
    if whole <= 0:
        raise ValueError(f"{text!r} is not more than 0 minutes")
    if whole > MAX_MINUTES:
        raise ValueError(f"{text!r} is more than 24 hours")
    return whole


def _no_argument(name: str, argument: str) -> None:
    if argument:
        raise _Bad(f"#{name} takes no argument (got {argument!r})")


def _needs(name: str, argument: str, what: str) -> str:
    if not argument:
        raise _Bad(f"#{name}: needs {what}")
    return argument


def _status(n: int, argument: str, statuses: tuple[str, ...]) -> Command:
    value = _needs("status", argument, f"a status (one of {', '.join(statuses)})")
    status = normalise_status(value)
    if status not in statuses:
        raise _Bad(f"#status: {value!r} is not one of {', '.join(statuses)}")
    return StatusCommand(n, status)


def _priority(n: int, argument: str) -> Command:
    value = _needs("priority", argument, f"a priority (one of {', '.join(PRIORITIES)})")
    if value.lower() not in PRIORITIES:
        raise _Bad(f"#priority: {value!r} is not one of {', '.join(PRIORITIES)}")
    return PriorityCommand(n, value.lower())


def _tag(n: int, name: str, argument: str) -> Command:
    value = _needs(name, argument, "a tag")
    if not TAG_PATTERN.fullmatch(value):
        raise _Bad(f"#{name}: {value!r} is not a tag (1-100 letters, digits and - _ . : /)")
    return (TagCommand if name == "tag" else UntagCommand)(n, value.lower())


def _cc(n: int, argument: str) -> Command:
    parts = argument.split()
    if len(parts) != 2 or parts[0].lower() not in ("add", "remove"):
        raise _Bad("#cc: needs 'add' or 'remove' and an address, e.g. #cc add bob@example.com")
    address = normalize(parts[1])
    if not is_valid(address):
        raise _Bad(f"#cc: {parts[1]!r} is not an email address")
    return CcCommand(n, parts[0].lower(), address)


def _merge(n: int, argument: str) -> Command:
    value = _needs("merge", argument, "the number of the ticket to merge with")
    if len(value.split()) != 1:
        raise _Bad(f"#merge: {value!r} is not a ticket number")
    return MergeCommand(n, value)


def _canned(n: int, argument: str) -> Command:
    value = _needs("canned", argument, "the name of a canned reply")
    if not CANNED_NAME.fullmatch(value):
        raise _Bad(f"#canned: {value!r} is not a canned reply name (1-100 letters, digits and . _ -)")
    return CannedCommand(n, value)


def _time(n: int, argument: str) -> Command:
    value = _needs("time", argument, f"a duration ({_DURATION_EXAMPLES})")
    try:
        return TimeCommand(n, parse_duration(value))
    except ValueError as exc:
        raise _Bad(f"#time: {exc}") from None


COMMAND_NAMES = (
    "status",
    "priority",
    "assign",
    "tag",
    "untag",
    "cc",
    "note",
    "close",
    "merge",
    "canned",
    "time",
    "send",
)
# Setting one of these twice in one reply is ambiguous (which status?): refused rather than guessed.
_ONCE = (StatusCommand, PriorityCommand, AssignCommand, MergeCommand, TimeCommand)


def _command(n: int, name: str, argument: str, statuses: tuple[str, ...]) -> Command:
    match name:
        case "status":
            return _status(n, argument, statuses)
        case "priority":
            return _priority(n, argument)
        case "assign":
            return AssignCommand(n, _needs("assign", argument, "an agent's email address or name"))
        case "tag" | "untag":
            return _tag(n, name, argument)
        case "cc":
            return _cc(n, argument)
        case "merge":
            return _merge(n, argument)
        case "canned":
            return _canned(n, argument)
        case "time":
            return _time(n, argument)
        case "note" | "close" | "send":
            _no_argument(name, argument)
            return {"note": NoteCommand, "close": CloseCommand, "send": SendCommand}[name](n)
    suggestion = difflib.get_close_matches(name, COMMAND_NAMES, n=1, cutoff=0.6)
    hint = f" (did you mean #{suggestion[0]}?)" if suggestion else ""
    raise _Bad(f"unknown command #{name}{hint}")


def parse_commands(text: str, extra_statuses: Iterable[str] = ()) -> ParsedReply:
    """Split an agent's reply (already decoded, quoted history already stripped or not: only the top
    matters) into its command block and the body. `extra_statuses`: custom statuses also allowed."""
    statuses = (*TICKET_STATUSES, *(s for s in extra_statuses if s not in TICKET_STATUSES))
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    result = ParsedReply()
    first_of: dict[type, int] = {}
    index = 0
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        match = _COMMAND_LINE.fullmatch(line)
        if match is None:
            break
        number = index + 1
        name, argument = match[1].lower(), (match[2] or "").strip()
        try:
            command = _command(number, name, argument, statuses)
        except _Bad as exc:
            result.errors.append(CommandError(number, raw, str(exc)))
            continue
        kind = type(command)
        if kind in _ONCE and kind in first_of:
            result.errors.append(
                CommandError(number, raw, f"#{name} given twice (lines {first_of[kind]} and {number})")
            )
            continue
        first_of.setdefault(kind, number)
        result.commands.append(command)
        result.is_note = result.is_note or kind is NoteCommand
    else:
        index = len(lines)  # nothing but commands and blank lines: no body
    result.body = "\n".join(lines[index:])
    return result


def describe_errors(errors: Iterable[CommandError]) -> str:
    """The text of the mail telling the agent why their reply went nowhere. It assumes the caller applies
    a reply's commands all or nothing: with any error, no command is carried out and nothing is sent."""
    errors = list(errors)
    parts = [
        "Your reply was not sent and none of its commands were carried out: "
        + ("this line has a problem." if len(errors) == 1 else f"these {len(errors)} lines have problems."),
        "",
    ]
    for error in errors:
        parts += [f"line {error.line_number}: {error.line.strip()}", f"  {error.problem}", ""]
    parts += [
        "Correct the command lines at the top of your reply and send it again.",
        "Commands: " + ", ".join(f"#{name}" for name in COMMAND_NAMES),
    ]
    return "\n".join(parts) + "\n"
