"""bounce: delivery reports, correlated to the outgoing mail and recipient. (Stub: filled in by issue 5.)"""

from __future__ import annotations

from pipeline.context import Context, Stop


def run(ctx: Context) -> Stop | None:
    return None
