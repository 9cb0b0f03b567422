"""maild's own log events are structured: under `maild serve` one JSON object per event with its fields,
never a dict rendered into the event's text (issue 13, point 5)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from maild import logs


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure(stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    logs._configured = False  # as in any process that never configured the JSON log
    structlog.reset_defaults()


def test_an_event_is_one_json_object_with_its_fields(json_log: io.StringIO) -> None:
    logs.log_event(
        "maild.outgoing",
        logging.INFO,
        "recipients_dropped",
        template="ticket_created",
        dropped={"bob@example.com": "rate limit"},
    )
    [line] = json_log.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "recipients_dropped"
    assert event["dropped"] == {"bob@example.com": "rate limit"}
    assert (event["template"], event["level"], event["logger"]) == (
        "ticket_created",
        "info",
        "maild.outgoing",
    )


def test_without_the_json_log_an_event_is_one_line_for_stderr(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="maild.outgoing"):
        logs.log_event("maild.outgoing", logging.INFO, "recipients_dropped", template="auto_close")
    [record] = caplog.records
    assert record.getMessage() == "recipients_dropped template=auto_close"
