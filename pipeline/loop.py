"""loop: our own outgoing mail coming back (X-Loop with a desk address, a Message-ID we sent, a desk address
as sender) → outcome `looped`. (Stub: filled in by issue 5.)"""

from __future__ import annotations

from pipeline.context import Context, Stop


def run(ctx: Context) -> Stop | None:
    return None
