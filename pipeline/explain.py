"""maildctl explain: what each stage decided about a mail, and why, as one sentence per stage.

The runner (`pipeline.runner.explain`) runs the real stages as a dry run and calls `describe` after each
one, while the transaction is still open; `summarize` then copies what an admin wants to see into plain
data before the transaction is rolled back. The sentences are the stages' own: each stage module has a
`describe(ctx, stop)` next to its `run`, reading what the stage recorded on the context; this module only
formats them. A stage without one, such as one a later issue adds, gets a generic sentence instead of a
crash."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from maild.pipeline import STAGES, Stage
from maild.pipeline.context import BounceInfo, Context, Stop
from maild.pipeline.dry_run import track_inserts, would_send

__all__ = ["Explanation", "describe", "failed", "summarize", "track_inserts"]

Describe = Callable[[Context, Stop | None], str]


@dataclass
class Explanation:
    """What a dry run decided, as plain data that outlives the rolled-back transaction."""

    outcome: str
    reason: str
    stages: list[dict[str, str]]
    desk: str | None = None
    ticket: str | None = None  # for a new ticket, the number it would get
    threaded_by: str | None = None  # token | references | subject | new
    linked_ticket: str | None = None
    visible_text: str | None = None
    text: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    would_send: list[dict[str, Any]] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    bounce: dict[str, Any] | None = None  # a delivery report: see bounce_json
    automatic: dict[str, Any] | None = None  # automatic mail: {"class": …, "reason": …}
    # The parsed headers, for outside checkers: `from` is {"address", "name"} (address "" when nothing
    # names a sender), `to` and `cc` lists of them; None and [] when the mail was not parsed.
    subject: str | None = None
    sender: dict[str, str] | None = None
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "stages": self.stages,
            "desk": self.desk,
            "ticket": self.ticket,
            "threaded_by": self.threaded_by,
            "linked_ticket": self.linked_ticket,
            "visible_text": self.visible_text,
            "text": self.text,
            "attachments": self.attachments,
            "would_send": self.would_send,
            "defects": self.defects,
            "bounce": self.bounce,
            "automatic": self.automatic,
            "subject": self.subject,
            "from": self.sender,
            "to": self.to,
            "cc": self.cc,
        }


def _generic(ctx: Context) -> str:
    """A stage whose module has no `describe`: what the context says, without guessing its rule."""
    facts = []
    if ctx.ticket is not None:
        facts.append(f"ticket {ctx.ticket.number}")
    if ctx.notes:
        facts.append(f"notes: {'; '.join(ctx.notes)}")
    return "passed" + (f" ({', '.join(facts)})" if facts else "")


def _describer(stage: Stage | None) -> Describe | None:
    """The `describe` next to the stage's `run`, in its module."""
    module = sys.modules.get(getattr(stage, "__module__", "") or "")
    found = getattr(module, "describe", None) if module is not None else None
    return found if callable(found) else None


def describe(name: str, ctx: Context, stop: Stop | None, stage: Stage | None = None) -> dict[str, str]:
    """The trace entry of one stage: its name, a sentence (the stage's own `describe`), and the outcome
    if processing stopped there."""
    if stop is not None:
        return {
            "stage": name,
            "verdict": f"{stop.outcome}: {stop.reason}" if stop.reason else stop.outcome,
            "stop": stop.outcome,
        }
    try:
        described = _describer(stage if stage is not None else dict(STAGES).get(name))
        verdict = described(ctx, None) if described is not None else _generic(ctx)
    except Exception as exc:  # an explanation must not fail where the stage itself did not
        verdict = f"passed (not described: {type(exc).__name__}: {exc})"
    return {"stage": name, "verdict": verdict}


# --- the whole dry run -----------------------------------------------------------------------------------


def _attachments(ctx: Context) -> list[dict[str, Any]]:
    parsed = ctx.mail.attachments if ctx.mail is not None else []
    if ctx.message is not None:  # what apply decided, refusals included
        # The stored attachment names its bytes by SHA-256 only (and a dry run stores no file): the MD5
        # comes from the parsed part with the same bytes.
        md5_of = {part.sha256: part.md5 for part in parsed}
        return [
            {
                "name": a.filename,
                "size": a.size,
                "type": a.content_type,
                "sha256": a.sha256,
                "md5": md5_of.get(a.sha256 or ""),
                "refused": a.refused_reason,
            }
            for a in ctx.message.attachments
        ]
    return [
        {
            "name": part.filename,
            "size": len(part.data),
            "type": part.content_type,
            "sha256": part.sha256,
            "md5": part.md5,
            "refused": None,
        }
        for part in parsed
    ]


def _mailboxes(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"address": address, "name": name} for name, address in pairs]


def _headers(ctx: Context) -> dict[str, Any]:
    """The parsed subject, sender and addressees as Explanation's fields (empty when not parsed)."""
    mail = ctx.mail
    if mail is None:
        return {}
    return {
        "subject": mail.subject,
        "sender": {"address": mail.from_address, "name": mail.from_name},
        "to": _mailboxes(mail.to),
        "cc": _mailboxes(mail.cc),
    }


def _visible_text(ctx: Context) -> str | None:
    if ctx.mail is None:
        return None
    # apply's decision when it ran (a forward opening a ticket keeps its quoted part), else the parser's.
    stored = ctx.message.visible_text if ctx.message is not None else None
    return stored or ctx.mail.visible_text


def bounce_json(info: BounceInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "permanent": info.permanent,
        "recipients": list(info.recipients),
        "status": info.status,
        "diagnostic": info.diagnostic,
        "matched_by": info.matched_by,
    }


def automatic_json(ctx: Context) -> dict[str, Any] | None:
    if ctx.automatic is None:
        return None
    return {"class": ctx.automatic, "reason": ctx.automatic_reason}


def summarize(ctx: Context, stages: list[dict[str, str]]) -> Explanation:
    mail = ctx.mail
    return Explanation(
        outcome=ctx.outcome,
        reason=ctx.reason,
        stages=stages,
        desk=ctx.desk.name if ctx.desk is not None else None,
        ticket=ctx.ticket.number if ctx.ticket is not None else None,
        threaded_by=ctx.threaded_by or None,
        linked_ticket=ctx.linked_ticket.number if ctx.linked_ticket is not None else None,
        visible_text=_visible_text(ctx),
        text=mail.text if mail is not None else None,
        attachments=_attachments(ctx),
        would_send=would_send(ctx),
        defects=list(mail.defects) if mail is not None else [],
        bounce=bounce_json(ctx.bounce),
        automatic=automatic_json(ctx),
        **_headers(ctx),
    )


def failed(ctx: Context, stages: list[dict[str, str]], stage: str, error: Exception) -> Explanation:
    """A stage raised: the stages before it, the error, and whatever the context still tells. The session
    may be unusable now (a failed flush), so anything that needs it is left out rather than risked."""
    reason = f"{type(error).__name__}: {error}"[:2000]
    stages = [*stages, {"stage": stage, "verdict": f"error: {reason}", "stop": "error"}]
    try:
        explanation = summarize(ctx, stages)
    except Exception:
        mail = ctx.mail
        explanation = Explanation(
            outcome="error",
            reason=reason,
            stages=stages,
            threaded_by=ctx.threaded_by or None,
            text=mail.text if mail is not None else None,
            defects=list(mail.defects) if mail is not None else [],
            bounce=bounce_json(ctx.bounce),  # plain fields of the context: no session needed
            automatic=automatic_json(ctx),
            **_headers(ctx),
        )
    explanation.outcome, explanation.reason = "error", reason
    return explanation
