"""The processing stages, in order. This tuple is the one place the order is decided."""

from __future__ import annotations

from collections.abc import Callable

from maild.pipeline import (
    agent_mail,
    apply,
    automation,
    autoreply,
    blocked,
    bounce,
    commands,
    dedupe,
    identify,
    loop,
    notify,
    parse,
    policy,
    route,
    spam,
    thread,
)
from maild.pipeline.context import Context, Stop

Stage = Callable[[Context], Stop | None]

# The hygiene stages (loop … autoreply) run before route: a bounce comes to `bounces+…@`, no desk's address,
# and what is looped, a bounce, spam or blocked never needs a desk. route runs before dedupe: a mail
# cross-posted to two desks is new for each of them.
STAGES: tuple[tuple[str, Stage], ...] = (
    ("parse", parse.run),
    ("loop", loop.run),
    ("bounce", bounce.run),
    ("spam", spam.run),
    ("blocked", blocked.run),
    ("autoreply", autoreply.run),
    ("route", route.run),
    ("dedupe", dedupe.run),
    ("agent_mail", agent_mail.run),
    ("identify", identify.run),
    ("thread", thread.run),
    ("policy", policy.run),
    ("commands", commands.run),
    ("apply", apply.run),
    ("automation", automation.run),
    ("notify", notify.run),
)
