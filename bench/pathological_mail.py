"""How long parsing takes for the pathological shapes of tests/test_fuzz.py (each once took minutes).

.venv/bin/python bench/pathological_mail.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maild.mailparse import NotAMessage, parse_mail  # noqa: E402
from tests.test_fuzz import PATHOLOGICAL  # noqa: E402


def main() -> None:
    for name, raw, _outcome, _reason in PATHOLOGICAL:
        started = time.perf_counter()
        try:
            parse_mail(raw)
            verdict = "parsed"
        except NotAMessage as exc:
            verdict = f"not a message ({exc})"
        ms = (time.perf_counter() - started) * 1000
        print(f"{name:32} {len(raw):>9} bytes  {ms:9.1f} ms  {verdict}")


if __name__ == "__main__":
    main()
