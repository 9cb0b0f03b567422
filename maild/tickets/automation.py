"""After a writer's changes, before its commit: the desk's rules run on what changed, then webhooks are
queued for every event, the rules' own changes included. One call for every writer: the pipeline (its
`automation` stage, after apply), maildctl (`App.session`), the scheduler's jobs, the web pages and the API.

Rules may change tickets again; their events go round once more, up to MAX_ROUNDS, and in one call a
rule fires at most once per ticket (rules_engine.one_pass), so rules cannot loop."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session

from maild.config import Config
from maild.outbound import sender
from maild.storage.events import TicketEvent, take_pending
from maild.tickets import rules_engine, webhook_queue

MAX_ROUNDS = 5
log = logging.getLogger("maild.rules")


def after_changes(session: Session, cfg: Config, now: dt.datetime) -> list[TicketEvent]:
    """Run the rules on the transaction's new events and queue their webhooks; returns every event."""
    seen: list[TicketEvent] = []
    with rules_engine.one_pass(session):
        for _round in range(MAX_ROUNDS):
            events = take_pending(session)
            if not events:
                break
            rules_engine.run_rules(session, cfg, events, now)
            webhook_queue.enqueue(session, events, now)
            seen.extend(events)
        else:
            left = take_pending(
                session
            )  # a chain of more than MAX_ROUNDS rules: the rest go to webhooks only
            if left:
                log.warning(
                    "rules stopped after %d rounds; %d event(s) went to webhooks only", MAX_ROUNDS, len(left)
                )
                webhook_queue.enqueue(session, left, now)
                seen.extend(left)
    return seen


# The outbox sender (a lower layer) announces a ticket's mail handed over through this, in its transaction.
sender.on_sent(after_changes)
