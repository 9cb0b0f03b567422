"""The command an agent puts on the first line of a NEW mail to a desk (not a reply to a ticket):

    #to customer@example.com        a ticket for that customer, the rest of the mail sent from the desk
    #cc a@example.com, b@example.com  (right after #to, any number of lines) the ticket's sub-customers
    #customer                       a forwarded customer mail below: a ticket on behalf of its sender
    #away [until DATE]              the agent is away (DATE: YYYY-MM-DD, the day they are back, or
                                    YYYY-MM-DD HH:MM; in the agent's time zone)
    #back                           the agent is present again

Pure parsing: no database (the pipeline's agent_mail stage checks the addresses against the desks and
agents). Command lines are recognised as in maild.tickets.commands: `#` directly followed by a letter.
A mail whose first non-blank line is no command line is not a desk command (None), nor is one starting
with a reply's command (#close, #status …: maild.tickets.commands): that agent meant to answer a notice,
and the pipeline holds such mail as before."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass

from maild.mail.addresses import is_valid, normalize
from maild.tickets.commands import COMMAND_NAMES, CommandError
from maild.tickets.presence import return_moment

_COMMAND_LINE = re.compile(r"#([A-Za-z][A-Za-z0-9_-]*)(?:\s+(.*))?")
DESK_COMMANDS = ("to", "cc", "customer", "away", "back")
_SEPARATORS = re.compile(r"[\s,;]+")
# what presence.return_moment reads, after "until" (no offset: the agent's zone)
_UNTIL = re.compile(r"until\s+(\d{4}-\d{2}-\d{2})(?:[ T](\d{1,2}:\d{2}))?", re.IGNORECASE)


@dataclass(frozen=True)
class OpenFor:
    """#to (with its #cc lines): the ticket's customer, sub-customers and the text after the commands."""

    customer: str
    ccs: tuple[str, ...]
    body: str


@dataclass(frozen=True)
class OnBehalf:
    """#customer: `rest` is what follows the line (the agent's note, then the forwarded mail)."""

    rest: str


@dataclass(frozen=True)
class Away:
    until: dt.datetime | None  # aware, in the agent's time zone; None: until they write #back


@dataclass(frozen=True)
class Back:
    pass


DeskCommand = OpenFor | OnBehalf | Away | Back


class _Bad(Exception):
    pass


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _address(name: str, value: str) -> str:
    address = normalize(value)
    if not is_valid(address):
        raise _Bad(f"#{name}: {value.strip()!r} is not an email address")
    return address


def parse_until(argument: str, now: dt.datetime, zone: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """`until DATE` of #away as an aware time in `zone` (the agent's; a date alone: its start, the day they
    are back, as `maildctl agent away --until`); _Bad when it is no such date or not in the future."""
    if not argument:
        return None
    match = _UNTIL.fullmatch(argument.strip())
    if match is None:
        raise _Bad(f"#away: {argument!r} is not 'until YYYY-MM-DD' or 'until YYYY-MM-DD HH:MM'")
    try:
        until = return_moment(f"{match[1]} {match[2].zfill(5)}" if match[2] else match[1], zone)
    except ValueError:
        raise _Bad(f"#away: {argument.strip()!r} is no date") from None
    if until <= now:
        raise _Bad(f"#away: {until:%Y-%m-%d %H:%M} ({zone}) is in the past")
    return until


def _open_for(lines: list[str], first: int, argument: str) -> OpenFor:
    """#to on line `first` (0-based), then #cc lines (blank lines between them allowed)."""
    customer = _address("to", argument) if argument else ""
    if not customer:
        raise _Bad("#to: needs the customer's address, e.g. #to customer@example.com")
    ccs: list[str] = []
    index = first + 1
    errors: list[CommandError] = []
    while index < len(lines):
        line = lines[index].strip()
        match = _COMMAND_LINE.fullmatch(line)
        if line and match is None:
            break
        if match is not None:
            if match[1].lower() != "cc":
                errors.append(CommandError(index + 1, lines[index], "only #cc lines may follow #to"))
            else:
                for value in filter(None, _SEPARATORS.split(match[2] or "")):
                    try:
                        ccs.append(_address("cc", value))
                    except _Bad as exc:
                        errors.append(CommandError(index + 1, lines[index], str(exc)))
        index += 1
    if errors:
        raise _Errors(errors)
    body = "\n".join(lines[index:]).strip("\n")
    return OpenFor(customer, tuple(dict.fromkeys(c for c in ccs if c != customer)), body)


class _Errors(Exception):
    def __init__(self, errors: list[CommandError]) -> None:
        self.errors = errors


def parse_desk_command(
    text: str, now: dt.datetime, zone: dt.tzinfo = dt.UTC
) -> DeskCommand | list[CommandError] | None:
    """The command on the first non-blank line of `text`, or the errors of its lines, or None when that
    line is no command line (the mail is not a desk command). `zone`: the agent's, for #away's date."""
    lines = _lines(text)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or (match := _COMMAND_LINE.fullmatch(lines[first].strip())) is None:
        return None
    name, argument = match[1].lower(), (match[2] or "").strip()
    if name in COMMAND_NAMES and name not in DESK_COMMANDS:
        return None
    try:
        if name == "to":
            return _open_for(lines, first, argument)
        if name in ("customer", "back") and argument:
            raise _Bad(f"#{name} takes no argument (got {argument!r})")
        if name == "customer":
            return OnBehalf("\n".join(lines[first + 1 :]))
        if name == "back":
            return Back()
        if name == "away":
            return Away(parse_until(argument, now, zone))
        if name == "cc":
            raise _Bad("#cc goes after a #to line")
        suggestion = difflib.get_close_matches(name, DESK_COMMANDS, n=1, cutoff=0.6)
        hint = f" (did you mean #{suggestion[0]}?)" if suggestion else ""
        raise _Bad(
            f"unknown command #{name}{hint}; a new mail to the desk may start with #to, #customer, "
            "#away or #back"
        )
    except _Errors as exc:
        return exc.errors
    except _Bad as exc:
        return [CommandError(first + 1, lines[first], str(exc))]


def describe_desk_errors(errors: list[CommandError]) -> str:
    """The answer's text: what was wrong, and that nothing was done."""
    parts = [
        "Nothing was done with your mail to the desk: "
        + ("this line has a problem." if len(errors) == 1 else f"these {len(errors)} lines have problems."),
        "",
    ]
    for error in errors:
        where = f"line {error.line_number}: {error.line.strip()}" if error.line_number else "your mail"
        parts += [where, f"  {error.problem}", ""]
    parts += [
        "A new mail to the desk may start with:",
        "  #to customer@example.com   (then #cc lines) a ticket for that customer, the rest of your mail "
        "sent to them",
        "  #customer                  on a forwarded customer mail: a ticket on behalf of its sender",
        "  #away [until YYYY-MM-DD]   you are away (until the day you are back);  #back   you are present",
    ]
    return "\n".join(parts) + "\n"
