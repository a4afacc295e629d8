"""``saferl labels`` and ``saferl review``: what a label store holds, its damage and salvage, and the review window."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saferl.cli.common import print_summary
from saferl.errors import SaferlError


def cmd_labels(args: argparse.Namespace) -> int:
    from saferl.labels.store import LabelStore

    if not args.check and args.salvage is None:
        with LabelStore.open(args.dir) as store:
            summary = store.summary()
        print_summary(f"label store {args.dir}", summary, args.json)
        return 0
    out = None if args.salvage is None else Path(args.salvage)
    if out is not None and out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise SaferlError(f"--salvage {out} exists and is not an empty folder: give a new folder for the repaired copy")
    with LabelStore.open(args.dir, recover=True, verify=True) as store:
        report = store.damage_report()
        if out is not None:
            store.copy_to(out).close()
            report["salvaged_to"] = str(out)
    ok, lost = report["records_ok"], report["damaged_bytes"]
    stretches = f"{report['damaged_stretches']} damaged stretch{'es' * (report['damaged_stretches'] != 1)}"
    title = (f"label store {args.dir}: {ok} records OK, {stretches} ({lost:,} bytes)" if out is None
             else f"salvaged {args.dir} into {out}: kept {ok} records, dropped {stretches} ({lost:,} bytes)")
    print_summary(title, {key: value for key, value in report.items() if key != "damage"}, False)
    for damage in report["damage"]:
        follows = "none follows" if damage["resumes_at"] is None else f"next valid record at {damage['resumes_at']}"
        print(f"  damaged: record {damage['record']} at byte offset {damage['offset']} ({damage['bytes']:,} bytes, "
              f"{follows}): {damage['reason']}")
    if args.json:
        print(json.dumps(report))
    if out is None and not report["sound"]:
        print(f"saferl: error: the label store {args.dir} is damaged ({stretches}, {lost:,} bytes; {ok} records OK): "
              f"saferl labels {args.dir} --salvage OUT copies the valid records to a new store", file=sys.stderr)
        return 2
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from saferl.human_ui import DEFAULT_SCALE
    from saferl.human_ui.review import review_labels
    from saferl.labels.store import LabelStoreError

    try:
        summary = review_labels(args.labels, args.blocker, DEFAULT_SCALE if args.scale is None else args.scale)
    except LabelStoreError as err:
        raise SaferlError(f"LABELS {args.labels}: {err}") from None
    print_summary(f"review of {args.labels}", summary, args.json)
    return 0
