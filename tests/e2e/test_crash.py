"""kill -9 of `maild serve` while Postfix delivers a burst over LMTP: after a restart every mail is exactly
one ticket. What a crash can leave: rows spooled but not processed (processed at start), and mails spooled
whose 250 never reached Postfix (Postfix delivers them again: the same bytes, a duplicate at most)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maild.storage.models import Message
from tests.daemon import EX_OK, Factory, free_port, wait_until
from tests.e2e.helpers import DESK, serve_config
from tests.pipeline.helpers import mail, outbox, spool, tickets
from tests.servers.postfix import StartPostfix

N = 200
SLOW = 180.0  # 200 mails through Postfix, maild and the database, on two shared cores, twice


def test_kill_9_under_load_loses_no_mail_and_makes_no_ticket_twice(
    postfix: StartPostfix,
    start: Any,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    lmtp_port = free_port()
    mta = postfix(lmtp_port=lmtp_port)
    # No smarthost: the auto-replies go to the Maildir; this test is about intake.
    config = serve_config(tmp_path / "serve.toml", data_dir, database_url, lmtp_port)
    serve = start(config)
    message_ids = [f"<load-{n}@mail.test>" for n in range(N)]
    mails = [
        (f"c{n}@mail.test", DESK, mail(sender=f"c{n}@mail.test", subject=f"request {n}", message_id=mid))
        for n, mid in enumerate(message_ids)
    ]

    replies = mta.send_many(mails)
    assert all(" Ok: queued as " in reply for reply in replies), replies[:3]
    # Partway: Postfix is still delivering, maild has accepted some and processed fewer.
    wait_until(lambda: len(serve.find("accepted")) >= N // 10, SLOW, "maild accepting mail")
    serve.proc.kill()  # SIGKILL: no drain, no cleanup, open LMTP sessions cut
    serve.proc.wait(timeout=10)

    restarted = start(config)  # the same port: Postfix's deferred mail comes back to it
    mta.wait_queue_empty(timeout=SLOW)
    wait_until(lambda: _all_done(session_factory), SLOW, "no spool row left 'received'", 0.25)

    with session_factory() as s:
        rows = spool(s)
        on_tickets = [tuple(pair) for pair in s.execute(select(Message.message_id, Message.ticket_id))]
        all_tickets = tickets(s)
        replies_queued = outbox(s)
    # Every Message-ID sent is on exactly one ticket, and each ticket is one mail.
    assert sorted(mid for mid, _ in on_tickets) == sorted(message_ids)
    assert len({ticket_id for _, ticket_id in on_tickets}) == N == len(all_tickets)
    # The spool: every delivery processed; a mail delivered twice (its 250 was lost in the kill) is a
    # duplicate of the first, never a second ticket.
    outcomes = sorted({r.outcome or "" for r in rows})
    assert set(outcomes) <= {"created", "duplicate"}, outcomes
    assert sum(r.outcome == "created" for r in rows) == N
    per_delivery: dict[tuple[str, str], set[int | None]] = defaultdict(set)
    for row in rows:
        per_delivery[(row.sha256, row.recipient)].add(row.ticket_id)
    assert len(per_delivery) == N
    assert all(len(ids - {None}) == 1 for ids in per_delivery.values()), per_delivery
    assert len(replies_queued) == N  # one auto-reply per ticket, none for a duplicate
    assert restarted.stop() == EX_OK


def _all_done(factory: Factory) -> bool:
    with factory() as s:
        return all(row.state == "done" for row in spool(s))
