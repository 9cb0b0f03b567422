"""The command block at the top of an agent's reply: maild.tickets.commands.parse_commands (no database)."""

from __future__ import annotations

import pytest

from maild.tickets.commands import (
    AssignCommand,
    CannedCommand,
    CcCommand,
    CloseCommand,
    Command,
    CommandError,
    MergeCommand,
    NoteCommand,
    PriorityCommand,
    SendCommand,
    StatusCommand,
    TagCommand,
    TimeCommand,
    UntagCommand,
    describe_errors,
    parse_commands,
    parse_duration,
)


def one(line: str) -> Command:
    parsed = parse_commands(f"{line}\nHello")
    assert parsed.errors == [], parsed.errors
    assert parsed.body == "Hello"
    [command] = parsed.commands
    return command


def problem(line: str, **kwargs: object) -> str:
    parsed = parse_commands(f"{line}\nHello", **kwargs)  # type: ignore[arg-type]
    assert parsed.commands == []
    [error] = parsed.errors
    assert (error.line_number, error.line) == (1, line)
    return error.problem


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("#status waiting", StatusCommand(1, "waiting")),
        ("#status in_progress", StatusCommand(1, "in_progress")),
        ("#status On Hold", StatusCommand(1, "on_hold")),
        ("#status on-hold", StatusCommand(1, "on_hold")),
        ("#priority high", PriorityCommand(1, "high")),
        ("#PRIORITY Urgent", PriorityCommand(1, "urgent")),
        ("#assign bob@example.com", AssignCommand(1, "bob@example.com")),
        ("#assign  Bob Builder ", AssignCommand(1, "Bob Builder")),
        ("#tag Billing", TagCommand(1, "billing")),
        ("#tag area:mail/imap_v2.1-x", TagCommand(1, "area:mail/imap_v2.1-x")),
        ("#tag Rückfrage", TagCommand(1, "rückfrage")),
        ("#untag billing", UntagCommand(1, "billing")),
        ("#cc add Carol@Example.com", CcCommand(1, "add", "carol@example.com")),
        ("#cc REMOVE <carol@example.com>", CcCommand(1, "remove", "carol@example.com")),
        ("#note", NoteCommand(1)),
        ("#close", CloseCommand(1)),
        ("#merge SUP-25-01-7", MergeCommand(1, "SUP-25-01-7")),
        ("#canned refund_policy.v2", CannedCommand(1, "refund_policy.v2")),
        ("#time 25m", TimeCommand(1, 25)),
        ("#send", SendCommand(1)),
        ("  #Close  ", CloseCommand(1)),
    ],
)
def test_each_command_parses(line: str, command: Command) -> None:
    assert one(line) == command


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("25m", 25),
        ("25min", 25),
        ("1h", 60),
        ("1h30m", 90),
        ("1h 30m", 90),
        ("1.5h", 90),
        ("1,5h", 90),
        ("0.25h", 15),
        ("90", 90),
        ("0:45", 45),
        ("2:05", 125),
        ("24h", 1440),
        ("1440", 1440),
        ("1 H", 60),
    ],
)
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes
    assert one(f"#time {text}") == TimeCommand(1, minutes)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("0", "'0' is not more than 0 minutes"),
        ("0m", "'0m' is not more than 0 minutes"),
        ("0:00", "'0:00' is not more than 0 minutes"),
        ("24h1m", "'24h1m' is more than 24 hours"),
        ("1441", "'1441' is more than 24 hours"),
        ("25h", "'25h' is more than 24 hours"),
        ("-5m", "is not a duration"),
        ("abc", "is not a duration"),
        ("h", "is not a duration"),
        ("1:75", "is not a duration"),
        ("1.5m", "is not a duration"),
        ("30m1h", "is not a duration"),
    ],
)
def test_bad_durations(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_duration(text)
    assert problem(f"#time {text}").startswith("#time: ")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("#status", "#status: needs a status (one of open, in_progress, waiting, on_hold, resolved, closed)"),
        (
            "#status pending",
            "#status: 'pending' is not one of open, in_progress, waiting, on_hold, resolved, closed",
        ),
        ("#priority hihg", "#priority: 'hihg' is not one of low, normal, high, urgent"),
        ("#priority", "#priority: needs a priority (one of low, normal, high, urgent)"),
        ("#assign", "#assign: needs an agent's email address or name"),
        ("#tag", "#tag: needs a tag"),
        ("#tag two words", "#tag: 'two words' is not a tag (1-100 letters, digits and - _ . : /)"),
        ("#tag " + "x" * 101, "is not a tag"),
        ("#untag a,b", "#untag: 'a,b' is not a tag (1-100 letters, digits and - _ . : /)"),
        (
            "#cc carol@example.com",
            "#cc: needs 'add' or 'remove' and an address, e.g. #cc add bob@example.com",
        ),
        ("#cc add", "#cc: needs 'add' or 'remove' and an address"),
        ("#cc drop carol@example.com", "#cc: needs 'add' or 'remove' and an address"),
        ("#cc add not-an-address", "#cc: 'not-an-address' is not an email address"),
        ("#note please", "#note takes no argument (got 'please')"),
        ("#close now", "#close takes no argument (got 'now')"),
        ("#send it", "#send takes no argument (got 'it')"),
        ("#merge", "#merge: needs the number of the ticket to merge with"),
        ("#merge SUP 1", "#merge: 'SUP 1' is not a ticket number"),
        ("#canned", "#canned: needs the name of a canned reply"),
        (
            "#canned two words",
            "#canned: 'two words' is not a canned reply name (1-100 letters, digits and . _ -)",
        ),
        ("#time", "#time: needs a duration (e.g. 25m, 1h, 1h30m, 1.5h, 90 (minutes), 0:45)"),
        ("#time soon", "#time: 'soon' is not a duration (e.g. 25m, 1h, 1h30m, 1.5h, 90 (minutes), 0:45)"),
        ("#stauts waiting", "unknown command #stauts (did you mean #status?)"),
        ("#prio high", "unknown command #prio (did you mean #priority?)"),
        ("#Clsoe", "unknown command #clsoe (did you mean #close?)"),
        ("#xyzzy", "unknown command #xyzzy"),
    ],
)
def test_bad_commands_name_the_problem(line: str, expected: str) -> None:
    assert expected in problem(line)


def test_an_unknown_command_without_a_close_match_suggests_nothing() -> None:
    assert problem("#xyzzy") == "unknown command #xyzzy"


def test_extra_statuses_are_accepted_and_listed() -> None:
    parsed = parse_commands("#status Awaiting-Parts\n", extra_statuses=["awaiting_parts"])
    assert parsed.commands == [StatusCommand(1, "awaiting_parts")]
    assert "awaiting_parts" in problem("#status nope", extra_statuses=["awaiting_parts"])
    assert problem("#status awaiting_parts").startswith("#status: 'awaiting_parts' is not one of")


def test_the_block_ends_at_the_first_line_that_is_not_a_command() -> None:
    text = "\n\n#status waiting\n\n#priority high\nHello Alice,\n\n#close\nthanks\n"
    parsed = parse_commands(text)
    assert parsed.commands == [StatusCommand(3, "waiting"), PriorityCommand(5, "high")]
    assert parsed.errors == []
    # #close after the text is text: it is neither executed nor removed.
    assert parsed.body == "Hello Alice,\n\n#close\nthanks\n"


def test_commands_after_text_are_text() -> None:
    parsed = parse_commands("Hello,\n#close\n#stauts x\n")
    assert (parsed.commands, parsed.errors, parsed.body) == ([], [], "Hello,\n#close\n#stauts x\n")


@pytest.mark.parametrize("first", ["#1 priority", "# heading", "#!", "#", "#-tag", "##status open"])
def test_hash_not_followed_by_a_letter_is_text(first: str) -> None:
    parsed = parse_commands(f"{first}\n#close\n")
    assert (parsed.commands, parsed.errors, parsed.body) == ([], [], f"{first}\n#close\n")


def test_leading_blank_lines_are_dropped_from_the_body() -> None:
    parsed = parse_commands("#tag a\n\n \n\nHello\n\nBye")
    assert parsed.commands == [TagCommand(1, "a")]
    assert parsed.body == "Hello\n\nBye"
    assert parse_commands("\n\nHello").body == "Hello"


def test_crlf_line_ends() -> None:
    parsed = parse_commands("#status waiting\r\n#time 1h30m\r\n\r\nHello\r\nBye\r\n")
    assert parsed.commands == [StatusCommand(1, "waiting"), TimeCommand(2, 90)]
    assert parsed.body == "Hello\nBye\n"
    bad = parse_commands("#priority hihg\r\nHello")
    assert bad.errors == [
        CommandError(1, "#priority hihg", "#priority: 'hihg' is not one of low, normal, high, urgent")
    ]


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n", "   "])
def test_empty_text(text: str) -> None:
    parsed = parse_commands(text)
    assert (parsed.commands, parsed.errors, parsed.body, parsed.is_note) == ([], [], "", False)


def test_only_commands_leaves_an_empty_body() -> None:
    parsed = parse_commands("#close\n#time 5\n")
    assert parsed.commands == [CloseCommand(1), TimeCommand(2, 5)]
    assert parsed.body == ""


def test_note_detection() -> None:
    assert parse_commands("#note\nInternal: customer is a VIP").is_note
    assert parse_commands("#tag vip\n#NOTE\nInternal").is_note
    assert not parse_commands("#tag vip\nHello").is_note
    assert not parse_commands("Hello\n#note\n").is_note  # in the text: not a command
    assert not parse_commands("#note this\nHello").is_note  # malformed: an error, not a note


def test_repeatable_and_once_only_commands() -> None:
    parsed = parse_commands("#tag a\n#tag b\n#canned x\n#canned y\n#status open\n#status closed\nHi")
    assert parsed.commands == [
        TagCommand(1, "a"),
        TagCommand(2, "b"),
        CannedCommand(3, "x"),
        CannedCommand(4, "y"),
        StatusCommand(5, "open"),
    ]
    assert parsed.errors == [CommandError(6, "#status closed", "#status given twice (lines 5 and 6)")]


def test_errors_and_valid_commands_are_both_reported() -> None:
    parsed = parse_commands("#priority high\n#stauts waiting\n#time 2x\nHello")
    assert parsed.commands == [PriorityCommand(1, "high")]
    assert [(e.line_number, e.line) for e in parsed.errors] == [(2, "#stauts waiting"), (3, "#time 2x")]
    assert parsed.body == "Hello"


def test_describe_errors_names_each_bad_line() -> None:
    parsed = parse_commands("#priority hihg\n#stauts waiting\nHello")
    text = describe_errors(parsed.errors)
    assert text.startswith("Your reply was not sent and none of its commands were carried out: these 2 lines")
    assert "line 1: #priority hihg\n  #priority: 'hihg' is not one of low, normal, high, urgent\n" in text
    assert "line 2: #stauts waiting\n  unknown command #stauts (did you mean #status?)\n" in text
    assert "#status, #priority, #assign" in text  # the list of commands, for reference
    single = describe_errors(parse_commands("#close now").errors)
    assert "this line has a problem." in single
    assert "line 1: #close now\n  #close takes no argument (got 'now')" in single
