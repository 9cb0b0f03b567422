"""The variables each outgoing mail's template gets, and sample values of them for trying a template on
(maild.outbound.template_loading, `maildctl template`)."""

from __future__ import annotations

from typing import Any

from maild.mail.attachment_policy import sample_refused_attachments

REMINDER = "reminder"  # what a desk's own template is: the only mail that takes a name of the desk's own

# --- the variables each template gets (built in maild/outbound/outgoing.py, maild/tickets/replies.py,
# pipeline/notify.py, maild/tickets/escalations.py, pipeline/commands.py, pipeline/bounce.py,
# maild/tickets/merge.py, maild/tickets/autoclose.py) ----------------------------------------------------

_TICKET = ("ticket_title", "ticket_number", "ticket_url", "desk_name", "customer_name")
_AGENT_NOTICE = (
    "ticket_status",
    "ticket_priority",
    "assigned_agent",
    "customer_email",
    "agent_name",
    "note_address",
)
_CUSTOMER_MAIL = ("sender_name", "sender_email", "comment_content", "attachments", "automatic")
TEMPLATE_VARIABLES: dict[str, tuple[str, ...]] = {
    "agent_reply": (
        *_TICKET,
        "agent_name",
        "comment_content",
        "refused_attachments",
        "rating_url",
        "opening",
    ),
    "desk_command_answer": ("desk_name", "agent_name", "original_subject", "carried_out", "answer_text"),
    "agent_reply_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "sender_name",
        "sender_email",
        "comment_content",
        "is_note",
        "attachments",
    ),
    "assigned_notice": (*_TICKET, *_AGENT_NOTICE, *_CUSTOMER_MAIL, "assigned_by"),
    "auto_close": (*_TICKET, "inactive_for", "reopen_days"),
    "bounce_notice": (*_TICKET, "bounced_address", "bounce_status", "bounce_diagnostic", "bounced_subject"),
    "collision_notice": (*_TICKET, "agent_name", "held_text", "missed"),
    "desk_unavailable": _TICKET,
    "command_errors": (*_TICKET, "agent_name", "errors_text"),
    "customer_reply_notice": (*_TICKET, *_AGENT_NOTICE, *_CUSTOMER_MAIL),
    "escalation_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "rule_name",
        "after_hours",
        "in_status",
        "in_status_for",
        "actions",
    ),
    "flag_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "flagged_by",
        "flag_note",
        "sender_name",
        "sender_email",
        "comment_content",
    ),
    "flood_digest_notice": (
        *_TICKET,
        *_AGENT_NOTICE,
        "sender_name",
        "sender_email",
        "held_mails",
        "held_count",
        "held_more",
        "burst_limit",
        "burst_minutes",
    ),
    "new_ticket_notice": (*_TICKET, *_AGENT_NOTICE, *_CUSTOMER_MAIL),
    "quarantine_digest_notice": (
        "desk_name",
        "agent_name",
        "quarantined_count",
        "mails",
        "mails_more",
        "spam_mails",
        "spam_count",
        "spam_more",
        "since",
        "interval_minutes",
    ),
    REMINDER: (*_TICKET, "ticket_status", "waiting_for", "rule_name"),
    "replies_only_refusal": ("desk_name", "customer_name", "original_subject"),
    "ticket_created": (*_TICKET, "refused_attachments"),
    "ticket_merged": (*_TICKET, "merged_numbers"),
    # The customers' pages (maild.tickets.sign_in, maild.tickets.web_pending): mail about no ticket.
    "web_sign_in": ("desk_name", "customer_name", "sign_in_url", "valid_minutes"),
    "web_confirm_address": ("desk_name", "customer_name", "confirm_url", "original_subject", "valid_hours"),
}
# Variables a template has whoever queues it: callers that predate them (`ticket split --notify`, an admin's
# `ticket reply` without the pipeline) would otherwise fail a desk template that uses them.
ALWAYS: dict[str, dict[str, Any]] = {
    "ticket_created": {"refused_attachments": []},
    "agent_reply": {"refused_attachments": [], "rating_url": "", "opening": False},
}

_CUSTOMER_TEXT = "The printer in room 4 is on fire again.\nCould someone come by?"
# variable → (value with everything set, value of a mail without the optional parts)
_QUARANTINED = {
    "spool_id": 17,
    "at": "2026-03-07 12:30 UTC",
    "size": "3.2 KB",
    "recipient": "support@example.com",
    "sender": '"Carol Customer" <carol@customer.example>',
    "envelope_sender": "carol@customer.example",
    "subject": "Printer on fire",
    "reason": "not a mail message: no header fields",
}
_QUARANTINED_SPAM = {**_QUARANTINED, "spool_id": 18, "reason": "spam: X-Spam-Flag: YES"}
_SAMPLES: dict[str, tuple[Any, Any]] = {
    "ticket_title": ("Printer on fire", "Printer on fire"),
    "ticket_number": ("SUP-26-03-1", "SUP-26-03-1"),
    "ticket_url": ("https://help.example.com/t/SUP-26-03-1", ""),
    "rating_url": ("https://help.example.com/t/SUP-26-03-1/rate/17", ""),
    "desk_name": ("support", "support"),
    "customer_name": ("Carol Customer", "carol@customer.example"),
    "ticket_status": ("open", "open"),
    "ticket_priority": ("normal", "normal"),
    "assigned_agent": ("Anna Agent", ""),
    "customer_email": ("carol@customer.example", "carol@customer.example"),
    "agent_name": ("Anna Agent", "Anna Agent"),
    "note_address": ("support+note.sample@example.com", ""),
    "sender_name": ("Carol Customer", ""),
    "sender_email": ("carol@customer.example", ""),
    "comment_content": (_CUSTOMER_TEXT, ""),
    "attachments": (
        [
            {"filename": "photo.jpg", "content_type": "image/jpeg", "size": 48213, "refused_reason": ""},
            {
                "filename": "setup.exe",
                "content_type": "application/x-msdownload",
                "size": 1200000,
                "refused_reason": "executable or script (.exe) refused",
            },
        ],
        [],
    ),
    "automatic": ("out-of-office", ""),
    "assigned_by": ("admin", "admin"),
    "is_note": (True, False),
    "opening": (False, True),
    "carried_out": (True, False),
    "answer_text": ("SUP-26-03-1 opened for carol@customer.example; the mail went to them.", "#tto: unknown"),
    "inactive_for": ("14 days", "14 days"),
    "reopen_days": (14, 0),
    "bounced_address": ("carol@customer.example", "carol@customer.example"),
    "bounce_status": ("5.1.1", ""),
    "bounce_diagnostic": ("550 5.1.1 <carol@customer.example>: user unknown", ""),
    "bounced_subject": ("[SUP-26-03-1] Printer on fire", "[SUP-26-03-1] Printer on fire"),
    "held_text": ("Have you tried turning it off and on again?", ""),
    "missed": (
        [
            {
                "sender_name": "Carol Customer",
                "sender_email": "carol@customer.example",
                "kind": "customer",
                "at": "2026-03-07 12:30 UTC",
                "text": "It is out now.",
            }
        ],
        [],
    ),
    "errors_text": ("#status nosuch: no status 'nosuch' on desk support", "#close: not allowed"),
    "rule_name": ("stale", "stale"),
    "after_hours": ("24", "0.5"),
    "in_status": ("waiting", "waiting"),
    "in_status_for": ("1 day 2 hours", "30 minutes"),
    "actions": (["status open → waiting", "priority normal → urgent"], []),
    "held_mails": (
        [
            {"ticket_number": "SUP-26-03-2", "subject": "Printer on fire", "at": "2026-03-07 12:30 UTC"},
            {"ticket_number": "SUP-26-03-3", "subject": "", "at": "2026-03-07 12:31 UTC"},
        ],
        [{"ticket_number": "SUP-26-03-2", "subject": "", "at": "2026-03-07 12:30 UTC"}],
    ),
    "held_count": (4, 1),
    "held_more": (2, 0),
    "burst_limit": (5, 5),
    "burst_minutes": (10, 10),
    "quarantined_count": (2, 1),
    "mails": ([_QUARANTINED], [_QUARANTINED]),
    "mails_more": (1, 0),
    "spam_mails": ([_QUARANTINED_SPAM], []),
    "spam_count": (1, 0),
    "spam_more": (0, 0),
    "since": ("2026-03-07 12:15 UTC", ""),
    "interval_minutes": (15, 15),
    "flagged_by": ("admin", "admin"),
    "flag_note": ("Please call them back.", ""),
    "original_subject": ("Printer on fire", "(no subject)"),
    "merged_numbers": (["SUP-26-03-2", "SUP-26-03-3"], ["SUP-26-03-2"]),
    "waiting_for": ("3 days", "3 days"),
    "refused_attachments": (sample_refused_attachments(), []),
    "sign_in_url": ("https://help.example.com/my/" + "S" * 43, "https://help.example.com/my/" + "S" * 43),
    "valid_minutes": (15, 15),
    "confirm_url": (
        "https://help.example.com/new/support/confirm/" + "C" * 43,
        "https://help.example.com/new/support/confirm/" + "C" * 43,
    ),
    "valid_hours": (24, 24),
}


def variables_of(name: str) -> tuple[str, ...]:
    """The variables template `name` gets; a desk's own template is a reminder."""
    return TEMPLATE_VARIABLES.get(name, TEMPLATE_VARIABLES[REMINDER])


def sample_variables(name: str, *, sparse: bool = False) -> dict[str, Any]:
    """Representative values of every variable template `name` gets; `sparse`: optional ones empty."""
    return {variable: _SAMPLES[variable][sparse] for variable in variables_of(name)}
