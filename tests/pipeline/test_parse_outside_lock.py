"""The CPU-heavy step, parsing, runs before the pipeline's write transaction: on SQLite that transaction
holds the one write lock, and every other delivery (intake's 250 included) waits for it (issue 14,
point 1)."""

from __future__ import annotations

import sqlite3

import pytest

from maild.config import Config
from maild.mail import mailparse
from tests.conftest import IS_POSTGRESQL
from tests.daemon import Factory
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_desk

pytestmark = pytest.mark.skipif(IS_POSTGRESQL, reason="SQLite's single write lock")


def test_parsing_holds_no_write_lock(
    session_factory: Factory, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    database = cfg.database_url.removeprefix("sqlite:///")
    free_while_parsing: list[bool] = []
    real_parse = mailparse.parse_mail

    def parse_and_probe(raw: bytes, mail_from: str = "") -> mailparse.ParsedMail:
        probe = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")  # fails at once if a writer holds the lock
            probe.execute("ROLLBACK")
            free_while_parsing.append(True)
        except sqlite3.OperationalError:
            free_while_parsing.append(False)
        finally:
            probe.close()
        return real_parse(raw, mail_from)

    # The runner parses through mailparse.parse_file, which calls this module's parse_mail.
    monkeypatch.setattr(mailparse, "parse_mail", parse_and_probe)
    result = deliver(session_factory, cfg, mail(), SUPPORT)
    assert result.outcome == "created"
    assert free_while_parsing == [True]


def test_not_a_mail_parsed_outside_is_still_quarantined(session_factory: Factory, cfg: Config) -> None:
    make_desk(session_factory, "support", [SUPPORT], SUP_PATTERN)
    result = deliver(session_factory, cfg, b"\x00\x01 not a mail at all", SUPPORT)
    assert result.outcome == "quarantined"
