"""What outgoing webhooks cost the pipeline per mail (issue 19): new-ticket mails processed in this process
(the pipeline's `process`, as `maild pipe` and the workers run it) on a fresh SQLite data dir, in three
settings: "placeholder" (enqueue stubbed out, as on main before webhooks: not even its one query), "off"
(no webhook: the one query per transaction), "on" (--webhooks webhooks subscribed to every event: each mail
queues ticket.created and message.received to each, 2 x N deliveries with their JSON bodies). Rounds
alternate the order (each run adds tickets, which slows the next a little: the order cancels that trend).

    .venv/bin/python bench/webhook_enqueue.py [--mails 200] [--webhooks 3] [--rounds 2] [--json]

Reports the median milliseconds per mail of each setting, and `enqueue` alone timed --calls times (in a
transaction that is rolled back) without and with the webhooks; load average before and after (on a
shared machine compare runs of one invocation only)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from maild.config import Config, load_config
from maild.storage.db import make_engine, make_sessionmaker, transaction
from maild.storage.events import TicketEvent
from maild.storage.migrate import upgrade
from maild.storage.models import Ticket, Webhook, WebhookDelivery, utcnow
from maild.tickets import automation, webhook_queue
from tests.pipeline.helpers import SUP_PATTERN, SUPPORT, deliver, mail, make_desk


def run(factory: sessionmaker[Session], cfg: Config, mails: int, tag: str) -> float:
    started = time.perf_counter()
    for n in range(mails):
        raw = mail(message_id=f"<{tag}-{n}@bench.example>", subject=f"Bench {tag} {n}")
        deliver(factory, cfg, raw, SUPPORT)
    return (time.perf_counter() - started) * 1000 / mails


def per_call_us(factory: sessionmaker[Session], calls: int) -> float:
    """Microseconds of one transaction's `enqueue` of a new ticket's two events (flushed, rolled back)."""
    with factory() as session:
        ticket = session.scalars(select(Ticket).order_by(Ticket.id)).first()
        assert ticket is not None
        events = [
            TicketEvent("ticket.created", ticket.id, ticket.desk_id),
            TicketEvent("status.changed", ticket.id, ticket.desk_id, {"before": "open", "after": "waiting"}),
        ]
        total = 0.0
        for _ in range(calls):
            started = time.perf_counter()
            webhook_queue.enqueue(session, events, utcnow())
            session.flush()
            total += time.perf_counter() - started
            session.rollback()
    return total * 1e6 / calls


def _nothing(*_args: object) -> None:
    pass


def set_webhooks(factory: sessionmaker[Session], count: int) -> None:
    with transaction(factory) as session:
        session.execute(delete(WebhookDelivery))
        session.execute(delete(Webhook))
        for i in range(count):
            session.add(Webhook(name=f"hook{i}", url="http://127.0.0.1:9/", secret="s", events=[]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--webhooks", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=500, help="enqueue calls timed alone, per setting")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "maild.toml"
        config.write_text(f'data_dir = "{tmp}/data"\n')
        cfg = load_config(str(config))
        cfg.spool_dir.mkdir(parents=True)
        upgrade(cfg.database_url)
        engine = make_engine(cfg.database_url, cfg.busy_timeout_ms)
        factory = make_sessionmaker(engine)
        make_desk(factory, "support", [SUPPORT], SUP_PATTERN)
        run(factory, cfg, 20, "warm")
        per_mail: dict[str, list[float]] = {"placeholder": [], "off": [], "on": []}
        settings = ("placeholder", "off", "on")
        order = [s for r in range(args.rounds) for s in (settings if r % 2 == 0 else settings[::-1])]
        real_enqueue = automation.webhook_queue.enqueue
        for i, setting in enumerate(order):
            set_webhooks(factory, args.webhooks if setting == "on" else 0)
            # placeholder: enqueue does nothing, as on main before this branch (not even its one query)
            automation.webhook_queue.enqueue = _nothing if setting == "placeholder" else real_enqueue  # type: ignore[assignment]
            per_mail[setting].append(run(factory, cfg, args.mails, f"r{i}"))
        automation.webhook_queue.enqueue = real_enqueue
        set_webhooks(factory, 0)
        enqueue_us = {"off": per_call_us(factory, args.calls)}
        set_webhooks(factory, args.webhooks)
        enqueue_us["on"] = per_call_us(factory, args.calls)
        engine.dispose()
    off, on = statistics.median(per_mail["off"]), statistics.median(per_mail["on"])
    placeholder = statistics.median(per_mail["placeholder"])
    result = {
        "ms_per_mail_placeholder": round(placeholder, 2),
        "enqueue_us_without": round(enqueue_us["off"], 1),
        "enqueue_us_with": round(enqueue_us["on"], 1),
        "mails_per_run": args.mails,
        "webhooks": args.webhooks,
        "ms_per_mail_without": round(off, 2),
        "ms_per_mail_with": round(on, 2),
        "difference_ms": round(on - off, 2),
        "runs": per_mail,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.mails} mails per run: {placeholder:.2f} ms/mail with the placeholder enqueue, "
            f"{off:.2f} ms/mail without webhooks, {on:.2f} ms/mail with "
            f"{args.webhooks} (difference {on - off:+.2f} ms); load {load_before[0]:.2f} → "
            f"{os.getloadavg()[0]:.2f}\n"
            f"enqueue alone, per transaction of a new ticket's 2 events: {enqueue_us['off']:.0f} µs "
            f"without webhooks, {enqueue_us['on']:.0f} µs with {args.webhooks} (each event to each)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
