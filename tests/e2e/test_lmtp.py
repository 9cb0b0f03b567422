"""Postfix → LMTP → `maild serve`, and maild's replies back out through the same Postfix to the customer's
Dovecot mailbox (docs/postfix.md (a), (c) and the size limits)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from maild.storage.models import Contact, OutboxMessage
from tests.daemon import EX_OK, Factory, all_done, free_port, wait_until
from tests.e2e.helpers import DESK, TIMEOUT, parse, relays, serve_config
from tests.pipeline.helpers import mail, outbox, spool, tickets
from tests.servers.dovecot import Dovecot
from tests.servers.postfix import StartPostfix


def test_a_mail_through_postfix_becomes_a_ticket_and_the_auto_reply_reaches_the_customer(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    start: Any,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    lmtp_port = free_port()
    mta = postfix(lmtp_port=lmtp_port, relays=relays(dovecot))
    serve = start(serve_config(tmp_path / "serve.toml", data_dir, database_url, lmtp_port, mta.smtp_port))
    raw = mail(sender=f"Carol <{customer}>", to=DESK, message_id="<printer-1@mail.test>")

    mta.send(customer, DESK, raw)

    mta.wait_log(r"to=<support@support\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent")
    wait_until(all_done(session_factory, 1), TIMEOUT, "the ticket")
    [reply_raw] = wait_until(lambda: dovecot.messages(customer), TIMEOUT, "the auto-reply in Dovecot", 0.25)
    mta.wait_queue_empty()
    with session_factory() as s:
        [ticket] = tickets(s)
        [row] = spool(s)
        assert (row.ingress, row.outcome, row.recipient, row.mail_from) == ("lmtp", "created", DESK, customer)
    reply = parse(reply_raw)
    assert f"[{ticket.number}]" in reply["Subject"]
    assert reply["In-Reply-To"] == "<printer-1@mail.test>"
    assert reply["To"].addresses[0].addr_spec == customer
    # Through Postfix to Dovecot: the VERP envelope sender came along (Dovecot's LMTP writes it down).
    assert reply["Return-Path"].startswith("<bounces+")
    assert reply["Return-Path"].endswith("@support.test>")
    assert serve.find("replies_handed_over")[0]["sent"] == 1
    assert serve.stop() == EX_OK


def test_an_unknown_desk_address_is_refused_and_postfix_bounces(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    start: Any,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    lmtp_port = free_port()
    mta = postfix(lmtp_port=lmtp_port, relays=relays(dovecot))
    serve = start(serve_config(tmp_path / "serve.toml", data_dir, database_url, lmtp_port, mta.smtp_port))

    # Postfix accepts any address of a relay domain; maild refuses the RCPT over LMTP.
    mta.send(customer, "nobody@support.test", mail(sender=customer, to="nobody@support.test"))

    line = mta.wait_log(r"to=<nobody@support\.test>.*status=bounced \((.*)\)")
    assert "550 5.1.1 <nobody@support.test>: no such desk" in line.group(1)
    [bounce_raw] = wait_until(lambda: dovecot.messages(customer), TIMEOUT, "the bounce", 0.25)
    bounce = parse(bounce_raw)
    assert bounce.get_content_type() == "multipart/report"
    assert "nobody@support.test" in bounce_raw.decode(errors="replace")
    mta.wait_queue_empty()
    assert serve.wait_for("recipient_rejected", recipient="nobody@support.test")
    with session_factory() as s:
        assert spool(s) == []
    assert serve.stop() == EX_OK


def test_size_limits_postfix_refuses_over_its_own_and_maild_over_max_message_bytes(
    postfix: StartPostfix,
    dovecot: Dovecot,
    customer: str,
    start: Any,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    # Scaled down, and on purpose *not* aligned as docs/postfix.md advises: Postfix lets through more than
    # maild takes, so that maild's limit is what refuses the mail in between.
    lmtp_port = free_port()
    mta = postfix(lmtp_port=lmtp_port, relays=relays(dovecot), message_size_limit=40_000)
    # A second instance, as if maild's LHLO had no SIZE: the mail is transferred and maild answers 552
    # after DATA, once per recipient (LMTP), or the LMTP client would wait for the missing replies.
    blind = postfix(
        lmtp_port=lmtp_port,
        relays=relays(dovecot),
        message_size_limit=40_000,
        main_cf={"lmtp_discard_lhlo_keywords": "size"},
    )
    config = serve_config(
        tmp_path / "serve.toml", data_dir, database_url, lmtp_port, mta.smtp_port, max_message_bytes=20_000
    )
    serve = start(config)
    line = "This line is seventy characters long, give or take a few of them....\n"
    between = mail(sender=customer, to=DESK, body=line * 400, message_id="<between@mail.test>")  # ~28 KB
    over_both = mail(sender=customer, to=DESK, body=line * 700, message_id="<big@mail.test>")  # ~49 KB
    small = mail(sender=customer, to=DESK, message_id="<small@mail.test>")
    two_desk_addresses = [DESK, "support+billing@support.test"]

    refused = mta.send(customer, DESK, over_both, check=False)
    mta.send(customer, DESK, between)
    blind.send(customer, two_desk_addresses, between)
    mta.send(customer, DESK, small)

    # Over Postfix's limit: refused in the customer's own SMTP session, nothing queued.
    assert refused.returncode != 0
    assert refused.last_reply.startswith("552 5.3.4")
    # Between the two: Postfix has accepted it and bounces it. It learns maild's limit from the SIZE in
    # maild's LHLO reply and does not even try to transfer the mail.
    bounced = mta.wait_log(r"to=<support@support\.test>.*status=bounced \((.*)\)")
    assert bounced.group(1) == "message size 28379 exceeds size limit 20000 of server 127.0.0.1[127.0.0.1]"
    # Without SIZE: maild's own 552 after DATA, one for each recipient.
    for rcpt in two_desk_addresses:
        pattern = rf"to=<{re.escape(rcpt)}>.*status=bounced \((.*)\)"
        reason = blind.wait_log(pattern).group(1)
        assert "said: 552 5.3.4 Message size exceeds the limit of 20000 bytes" in reason
        assert "(in reply to end of DATA command)" in reason
    wait_until(all_done(session_factory, 1), TIMEOUT, "the small mail's ticket")
    mta.wait_queue_empty()
    blind.wait_queue_empty()
    with session_factory() as s:
        [ticket] = tickets(s)
        assert [m.message_id for m in ticket.messages] == ["<small@mail.test>"]
    # The customer's mailbox: the auto-reply to the small mail and a bounce from each Postfix.
    mails = wait_until(lambda: _when_count(dovecot.messages(customer), 3), TIMEOUT, "three mails", 0.25)
    subjects = sorted(str(parse(raw)["Subject"]) for raw in mails)
    assert subjects[:2] == ["Undelivered Mail Returned to Sender"] * 2
    assert f"[{ticket.number}]" in subjects[2]
    assert serve.stop() == EX_OK


def _outbox(session_factory: Factory) -> list[OutboxMessage]:
    with session_factory() as s:
        return outbox(s)


def _when_count(items: list[bytes], count: int) -> list[bytes] | None:
    return items if len(items) == count else None


def test_a_bounce_of_a_reply_comes_back_to_maild(
    postfix: StartPostfix,
    dovecot: Dovecot,
    start: Any,
    support: None,
    tmp_path: Path,
    data_dir: Path,
    database_url: str,
    session_factory: Factory,
) -> None:
    lmtp_port = free_port()
    mta = postfix(lmtp_port=lmtp_port, relays=relays(dovecot))
    start(serve_config(tmp_path / "serve.toml", data_dir, database_url, lmtp_port, mta.smtp_port))
    ghost = f"ghost@{dovecot.domain}"  # no such mailbox: Dovecot refuses maild's auto-reply

    mta.send(ghost, DESK, mail(sender=ghost, to=DESK, message_id="<ghost@mail.test>"))

    # Postfix's bounce of the auto-reply goes to its VERP envelope sender, back over LMTP to maild.
    verdict = mta.wait_log(r"to=<bounces\+[^>]*@support\.test>, relay=127\.0\.0\.1.*status=(\w+) \((.*)\)")
    assert verdict.group(1) == "sent", verdict.group(2)
    mta.wait_queue_empty()
    wait_until(all_done(session_factory, 2), TIMEOUT, "the mail and its bounce processed")
    with session_factory() as s:
        [ticket] = tickets(s)  # the bounce opened none
        [mail_row, bounce_row] = spool(s)
        assert mail_row.outcome == "created"
        assert bounce_row.recipient.startswith("bounces+") and bounce_row.mail_from == "<>"  # null sender
        assert bounce_row.outcome == "bounce", bounce_row.reason
        assert bounce_row.reason.startswith(f"permanent failure for {ghost}: ")
        assert bounce_row.ticket_id == ticket.id
        # Dovecot's refusal, as Postfix's DSN carries it: a 5.1.1 for a user that does not exist.
        assert "5.1.1" in bounce_row.reason
        ghost_contact = s.scalars(select(Contact).where(Contact.email == ghost)).one()
        assert ghost_contact.status == "bouncing" and "5.1.1" in ghost_contact.status_reason
        [note] = [m for m in ticket.messages if m.kind == "system"]
        assert note.text.startswith(f"Mail to {ghost} bounced: ")
        assert "matched by verp" in note.text
    # The desk has no agents: nobody to notify, and nothing else went out (the ticket_created reply only).
    assert [r.template for r in _outbox(session_factory)] == ["ticket_created"]
