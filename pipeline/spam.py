"""spam: an upstream filter's verdict → outcome `quarantined`, reason `spam: <the header>`, nothing sent.

Only yes-verdicts count, each filter's own: SpamAssassin's `X-Spam-Flag: YES` and `X-Spam-Status: Yes, …`,
Rspamd's `X-Spam: Yes`. Rspamd's `X-Spam-Action` is not read: the actions that let mail through
("add header", "rewrite subject") come with `X-Spam: Yes` anyway, and "greylist"/"no action" are no
verdict. maild runs no filter of its own. A forged "No" cannot hide a "Yes" (any yes wins); a forged
"Yes" only holds the forger's own mail. A row an admin released (`maildctl spool release`) passes."""

from __future__ import annotations

from email.message import Message as HeaderBlock

from maild.mail.automatic import read_headers
from maild.pipeline.context import Context, Stop

MAX_SHOWN = 200  # X-Spam-Status lists every test that hit: the reason keeps its start


def _is_yes(value: str) -> bool:
    # X-Spam-Flag: YES · X-Spam: Yes · X-Spam-Status: Yes, score=7.3 required=5.0 tests=…
    words = value.split(",", 1)[0].split()
    return bool(words) and words[0].lower() == "yes"


def verdict(source: bytes | HeaderBlock) -> tuple[bool, list[str]]:
    """(spam?, the verdict headers found, as `Name: value`, the yes-verdicts first). `source`: the raw
    mail, or its header block as read_headers parsed it (the stage passes ctx.headers)."""
    # compat32 does no parsing of its own, so a malformed header cannot raise here.
    headers = read_headers(source) if isinstance(source, bytes) else source
    yes: list[str] = []
    other: list[str] = []
    for name in ("X-Spam-Flag", "X-Spam-Status", "X-Spam"):
        for value in headers.get_all(name) or []:
            text = " ".join(str(value).split())  # unfolded
            shown = f"{name}: {text}"
            if len(shown) > MAX_SHOWN:
                shown = shown[: MAX_SHOWN - 1] + "…"
            (yes if _is_yes(text) else other).append(shown)
    return bool(yes), yes + other


def run(ctx: Context) -> Stop | None:
    spam, found = verdict(ctx.headers)
    ctx.spam_headers = found
    if ctx.spool.released:  # an admin let it through: the verdict no longer holds it
        return None
    if spam:
        return Stop("quarantined", f"spam: {found[0]}")
    return None


# --- for maildctl explain ---------------------------------------------------------------------------


def describe(ctx: Context, stop: Stop | None = None) -> str:
    """For maildctl explain: what this stage found (the runner asks only when it did not stop)."""
    headers = ctx.spam_headers
    if ctx.spool.released:
        said = f" ({'; '.join(headers)})" if headers else ""
        return f"released by an admin: an upstream spam verdict no longer holds it{said}"
    if headers:  # not spam, but a filter looked at it: say what it said
        return f"upstream filter says not spam: {'; '.join(headers)}"
    return "no spam verdict from an upstream filter (X-Spam-Flag, X-Spam-Status, X-Spam)"
