"""autoreply: automatic mail (RFC 3834 and the rest) is flagged, never answered. (Stub: issue 5.)"""

from __future__ import annotations

from pipeline.context import Context, Stop


def run(ctx: Context) -> Stop | None:
    return None
