"""The hygiene corpus (issue 5): `tests/corpus/bounces/NNN-name.eml`, each with `NNN-name.json` saying
what it is — {"class": "bounce", …} (1NN: delivery reports), {"class": "auto-reply", "kind": …} (2NN:
out-of-office, auto-generated, list, challenge-response) or {"class": "normal"} (3NN: mail a person wrote).

Every file goes through the real spool and pipeline into a fresh database of its own (desk
support@example.com), delivered over LMTP with an envelope sender: the JSON's "mail_from", else "" for a
bounce (RFC 5321 §4.5.5) and the From address for the rest. What came out is read from the database,
by outcome:
  bounce      spool outcome `bounce`, or `archived` with a reason starting `bounce-unmatched`
  auto-reply  the stored message is flagged (Message.automatic) and nothing was queued to the sender
  normal      the stored message is not flagged and the `ticket_created` auto-reply was queued to the sender
Per class, precision and recall are printed (pytest -s, and in the assertion message) and must be 100%.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.mail.addresses import normalize
from maild.mail.automatic import CLASSES as AUTOMATIC_KINDS
from maild.pipeline.runner import process
from maild.storage.db import make_engine, make_sessionmaker, transaction
from maild.storage.models import Message, OutboxMessage, SpoolEntry
from maild.storage.spool import record_received, write_raw
from tests.conftest import IS_POSTGRESQL, _pg_url
from tests.pipeline.helpers import NOW, SUP_PATTERN, SUPPORT, make_desk

CORPUS = Path(__file__).resolve().parent / "corpus" / "bounces"
FILES = sorted(path.stem for path in CORPUS.glob("*.eml"))
CLASSES = ("bounce", "auto-reply", "normal")
MIN_AUTO_REPLIES, MIN_NORMAL = 14, 8


@dataclass(frozen=True)
class Outcome:
    expected: str  # the JSON's class
    expected_kind: str | None  # auto-reply: its JSON kind
    found: str  # bounce | auto-reply | normal | neither
    kind: str | None  # Message.automatic
    detail: str  # what the database says, for a mismatch's message


def _spec(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))


def _from_and_to(raw: bytes) -> tuple[str, str]:
    msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    sender = msg["From"].addresses[0].addr_spec if msg["From"] and msg["From"].addresses else ""
    to = msg["To"].addresses[0].addr_spec if msg["To"] and msg["To"].addresses else ""
    return normalize(sender), normalize(to)


@dataclass(frozen=True)
class _Database:
    template: str
    root: Path

    @contextmanager
    def fresh(self, name: str) -> Iterator[str]:
        """A migrated database for one file, as tests/conftest.py's `database_url` makes one per test."""
        if IS_POSTGRESQL:
            admin = create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
            db = f"maild_hygiene_{os.getpid()}_{name.split('-')[0]}"
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}"'))
                conn.execute(text(f'CREATE DATABASE "{db}" TEMPLATE "{self.template}"'))
            try:
                yield _pg_url(db)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
                admin.dispose()
        else:
            target = self.root / name / "maild.sqlite3"
            target.parent.mkdir(parents=True)
            shutil.copyfile(self.template, target)
            yield f"sqlite:///{target}"


def _config(root: Path, url: str) -> Config:
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    config = root / "maild.toml"
    config.write_text(f'data_dir = "{data_dir}"\n\n[database]\nurl = "{url}"\n')
    return load_config(str(config))


def _observe(factory: sessionmaker[Session], spool_id: int, sender: str) -> tuple[str, str | None, str]:
    with factory() as session:
        entry = session.get(SpoolEntry, spool_id)
        assert entry is not None
        outcome, reason = entry.outcome or "", entry.reason or ""
        message = session.scalars(
            select(Message).where(Message.spool_id == spool_id, Message.kind.in_(("customer", "agent")))
        ).first()
        rows = list(session.scalars(select(OutboxMessage)))
        to_sender = [row for row in rows if sender in {normalize(a) for a in row.rcpt_to}]
        kind = message.automatic if message is not None else None
        detail = (
            f"outcome {outcome!r}, reason {reason!r}, message {'stored' if message else 'none'}, "
            f"automatic {kind!r}, queued to the sender: {[row.template for row in to_sender]}"
        )
        if outcome == "bounce" or (outcome == "archived" and reason.startswith("bounce-unmatched")):
            return "bounce", kind, detail
        if message is not None and kind is not None and not to_sender:
            return "auto-reply", kind, detail
        if (
            message is not None
            and kind is None
            and any(row.template == "ticket_created" for row in to_sender)
        ):
            return "normal", kind, detail
        return "neither", kind, detail


def _run_one(database: _Database, name: str) -> Outcome:
    spec = _spec(name)
    raw = (CORPUS / f"{name}.eml").read_bytes()
    sender, to = _from_and_to(raw)
    is_bounce = spec["class"] == "bounce"
    # A bounce comes to the VERP address it was sent to (bounces+…@); everything else to the desk.
    recipient = spec.get("recipient") or (to if is_bounce and to.startswith("bounces+") else SUPPORT)
    mail_from = spec.get("mail_from", "" if is_bounce else sender)
    with database.fresh(name) as url:
        cfg = _config(database.root / name / "instance", url)
        engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
        try:
            factory = make_sessionmaker(engine)
            make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
            digest = write_raw(cfg.spool_dir, raw)
            with transaction(factory) as session:
                spool_id = record_received(session, digest, len(raw), recipient, "lmtp", mail_from).id
            process(factory, cfg, spool_id, NOW)
            found, kind, detail = _observe(factory, spool_id, sender)
        finally:
            engine.dispose()
    return Outcome(spec["class"], spec.get("kind"), found, kind, detail)


@pytest.fixture(scope="module")
def outcomes(_template_db: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    database = _Database(_template_db, tmp_path_factory.mktemp("hygiene"))
    return {name: _run_one(database, name) for name in FILES}


def _table(outcomes: dict[str, Outcome]) -> tuple[str, bool]:
    """Precision and recall per class, as text, and whether all of them are 100%."""
    lines = [f"{'class':<12} {'files':>5} {'found':>5} {'right':>5} {'precision':>10} {'recall':>8}"]
    perfect = True
    for cls in CLASSES:
        expected = [o for o in outcomes.values() if o.expected == cls]
        found = [o for o in outcomes.values() if o.found == cls]
        right = [o for o in expected if o.found == cls]
        precision = len(right) / len(found) if found else None
        recall = len(right) / len(expected) if expected else None
        perfect &= precision in (None, 1.0) and recall in (None, 1.0)
        shown = ["n/a" if v is None else f"{v:.0%}" for v in (precision, recall)]
        lines.append(
            f"{cls:<12} {len(expected):>5} {len(found):>5} {len(right):>5} {shown[0]:>10} {shown[1]:>8}"
        )
    autos = [o for o in outcomes.values() if o.expected == "auto-reply"]
    kinds_right = sum(o.kind == o.expected_kind for o in autos)
    lines.append(f"auto-reply kinds right: {kinds_right}/{len(autos)}")
    return "\n".join(lines), perfect and kinds_right == len(autos)


def test_corpus_files_are_complete() -> None:
    specs = sorted(path.stem for path in CORPUS.glob("*.json"))
    assert specs == FILES, "every NNN-name.eml needs its NNN-name.json and the other way round"
    for name in FILES:
        spec = _spec(name)
        assert spec["class"] in CLASSES, name
        prefix = {"bounce": "1", "auto-reply": "2", "normal": "3"}[spec["class"]]
        assert name.startswith(prefix) and name[:3].isdigit() and name[3] == "-", name
        if spec["class"] == "auto-reply":
            assert spec["kind"] in AUTOMATIC_KINDS, name
    by_class = [_spec(name)["class"] for name in FILES]
    assert by_class.count("auto-reply") >= MIN_AUTO_REPLIES
    assert by_class.count("normal") >= MIN_NORMAL
    kinds = {_spec(name).get("kind") for name in FILES if _spec(name)["class"] == "auto-reply"}
    assert kinds == set(AUTOMATIC_KINDS), "every class of automatic mail is in the corpus"


@pytest.mark.parametrize("name", FILES)
def test_hygiene_corpus_file(name: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[name]
    assert outcome.found == outcome.expected, f"{name}: expected {outcome.expected}, got: {outcome.detail}"
    if outcome.expected == "auto-reply":
        assert outcome.kind == outcome.expected_kind, (
            f"{name}: expected {outcome.expected_kind}: {outcome.detail}"
        )


def test_hygiene_precision_and_recall(outcomes: dict[str, Outcome]) -> None:
    """Detection precision and recall per class (bounce, auto-reply, normal): 100% on the corpus."""
    table, perfect = _table(outcomes)
    print(f"\nhygiene corpus, {len(outcomes)} files:\n{table}")
    wrong = [
        f"{name}: expected {o.expected} {o.expected_kind or ''}, got {o.found} {o.kind or ''}: {o.detail}"
        for name, o in outcomes.items()
        if o.found != o.expected or (o.expected == "auto-reply" and o.kind != o.expected_kind)
    ]
    assert perfect and not wrong, table + "\n" + "\n".join(wrong)
