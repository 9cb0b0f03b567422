"""maildctl explain FILE…: why did this mail land there? A dry run of the pipeline, stage by stage.

Nothing changes: the run's transaction is rolled back and no file is written (pipeline.runner.explain).
Exit 0 when every file was explained, 1 when a stage raised on any of them (the explanation is printed
anyway: the real pipeline would retry that mail, then quarantine it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from maild.admin_cli.common import App, UserError, print_json


def register(commands: Any) -> None:
    explain = commands.add_parser(
        "explain", help="dry-run the pipeline on mail files: what each stage would decide, and why"
    )
    explain.add_argument("files", nargs="+", metavar="FILE", help="a raw mail (.eml), as an MTA delivers it")
    explain.add_argument(
        "--recipient", help="envelope recipient (default: Delivered-To, X-Original-To, To, Cc), as maild pipe"
    )
    explain.add_argument("--json", action="store_true", help="a JSON list, one object per FILE in order")
    explain.set_defaults(handler=explain_files)


def _read_all(names: list[str]) -> list[bytes]:
    """Every file before any run: a typo in the last name should not cost the admin the first ones."""
    contents = []
    for name in names:
        try:
            contents.append(Path(name).read_bytes())
        except OSError as exc:
            raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None
    return contents


def _print_human(result: dict[str, Any]) -> None:
    print(f"== {result['file']}")
    for stage in result["stages"]:
        print(f"  {stage['stage']}: {stage['verdict']}")
    reason = f" ({result['reason']})" if result["reason"] else ""
    print(f"outcome: {result['outcome'] or '-'}{reason}")
    bounce = result["bounce"]
    if bounce is not None:
        kind = "permanent" if bounce["permanent"] else "temporary"
        status = f" {bounce['status']}" if bounce["status"] else ""
        matched = f", matched by {bounce['matched_by']}" if bounce["matched_by"] else ", unmatched"
        print(f"bounce: {kind}{status} for {', '.join(bounce['recipients']) or '-'}{matched}")
        if bounce["diagnostic"]:
            print(f"  diagnostic: {bounce['diagnostic']}")
    automatic = result["automatic"]
    if automatic is not None:
        why = f" ({automatic['reason']})" if automatic["reason"] else ""
        print(f"automatic: {automatic['class']}{why}")
    if result["ticket"]:
        facts = [f"threaded by {result['threaded_by']}"] if result["threaded_by"] else []
        if result["linked_ticket"]:
            facts.append(f"linked to {result['linked_ticket']}")
        detail = f" ({', '.join(facts)})" if facts else ""
        print(f"ticket: {result['ticket']} on desk {result['desk']}{detail}")
    for attachment in result["attachments"]:
        refused = f", refused: {attachment['refused']}" if attachment["refused"] else ""
        print(f"attachment: {attachment['name']} ({attachment['type']}, {attachment['size']} bytes{refused})")
    if result["visible_text"] is not None:
        print("visible text:")
        for line in result["visible_text"].rstrip().splitlines() or [""]:
            print(f"  | {line}".rstrip())
    for mail in result["would_send"]:
        cc = f" cc {', '.join(mail['cc'])}" if mail["cc"] else ""
        print(f"would send: {mail['template']} to {', '.join(mail['to'])}{cc}: {mail['subject']}")


def explain_files(app: App, args: argparse.Namespace) -> int:
    from maild.pipeline.runner import explain  # the pipeline's imports are paid only by this command

    contents = _read_all(args.files)
    results = [
        {"file": name, **explain(app.factory, app.cfg, raw, args.recipient or "").as_json()}
        for name, raw in zip(args.files, contents, strict=True)
    ]
    if args.json:
        print_json(results)
    else:
        for index, result in enumerate(results):
            if index:
                print()
            _print_human(result)
    errored = [r["file"] for r in results if r["outcome"] == "error"]
    if errored:
        print(f"maildctl: a stage failed on {', '.join(errored)} (see its explanation)", file=sys.stderr)
        return 1
    return 0
