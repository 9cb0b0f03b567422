"""End-to-end tests: a real Postfix (tests/servers/postfix.py) in front of `maild serve` or `maild pipe`,
the customers' mailboxes in a real Dovecot (tests/servers/dovecot.py), mail sent with swaks.

Every test starts its own servers on free loopback ports and gets a fresh database (tests/conftest.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import (
    Factory,
    start_fixture,  # noqa: F401 (the fixture `start`)
)
from tests.e2e.helpers import DESK
from tests.pipeline.helpers import SUP_PATTERN, make_desk
from tests.servers.dovecot import (
    Dovecot,
    dovecot,  # noqa: F401 (the fixture)
)
from tests.servers.postfix import (
    postfix_fixture,  # noqa: F401 (the fixture `postfix`)
    private_base,
)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Replaces pytest's tmp_path here: maild's data dir, config and SQLite database live in it, and
    `maild pipe` runs as an unprivileged user, who cannot traverse pytest's 0700 directories."""
    path = private_base("maild-e2e-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def support(session_factory: Factory) -> None:
    """The desk of every test here: `support`, address support@support.test."""
    make_desk(session_factory, "support", [DESK], SUP_PATTERN)


@pytest.fixture
def customer(dovecot: Dovecot) -> str:  # noqa: F811 (the fixture imported above)
    """A customer's address with a mailbox in Dovecot (where maild's replies and Postfix's bounces land)."""
    return dovecot.add_user("carol")
