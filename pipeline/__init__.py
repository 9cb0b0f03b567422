"""The processing stages, in order. This tuple is the one place the order is decided."""

from __future__ import annotations

from collections.abc import Callable

from pipeline import apply, dedupe, identify, notify, parse, policy, route, thread
from pipeline.context import Context, Stop

Stage = Callable[[Context], Stop | None]

# route runs before dedupe: a mail cross-posted to two desks is new for each of them.
STAGES: tuple[tuple[str, Stage], ...] = (
    ("parse", parse.run),
    ("route", route.run),
    ("dedupe", dedupe.run),
    ("identify", identify.run),
    ("thread", thread.run),
    ("policy", policy.run),
    ("apply", apply.run),
    ("notify", notify.run),
)
