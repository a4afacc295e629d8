"""``saferl experiment``, ``saferl sweep`` and ``saferl report``: the HIRL experiment, grids of them, and the report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from saferl.cli.common import human_options, print_summary
from saferl.errors import SaferlError
from saferl.files import writable_dir
from saferl.schema import comma_separated

EXPERIMENT_KEYS = ("game", "agent", "overseer", "conditions", "oversight_steps", "total_steps", "mode", "penalty",
                   "block_penalty", "device", "workers", "threads", "checkpoint_every")


def experiment_data(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment's settings: ``--config``'s, overridden by the flags. The file's ``overseer_options`` are
    dropped when ``--overseer`` names another overseer (they are that file's overseer's)."""
    from saferl.experiment.config import load_config_file

    data = load_config_file(args.config) if args.config else {}
    if args.overseer is not None and args.overseer != data.get("overseer", args.overseer):
        data.pop("overseer_options", None)
    data.update({k: getattr(args, k) for k in EXPERIMENT_KEYS if getattr(args, k) is not None})
    if args.seeds is not None:
        data["seeds"] = list(range(args.seeds))
    if args.seed_list is not None:
        data["seeds"] = args.seed_list
    if args.hyperparam:
        data["hyperparams"] = {**data.get("hyperparams", {}), **dict(args.hyperparam)}
    if args.overseer_option:
        data["overseer_options"] = {**data.get("overseer_options", {}), **dict(args.overseer_option)}
    blocker = dict(data.get("blocker", {}))
    for key in ("margin", "epochs"):
        if getattr(args, f"blocker_{key}") is not None:
            blocker[key] = getattr(args, f"blocker_{key}")
    if args.allow_degenerate_blocker:
        blocker["allow_degenerate"] = True
    data["blocker"] = blocker
    human = human_options(args, data.get("overseer", "scripted"))
    if human:
        data["overseer_options"] = {**data.get("overseer_options", {}), **human}
    return data


RESUME_FLAGS = ("total_steps", "conditions", "workers")  # what --resume takes besides the run folder


def check_resume_flags(args: argparse.Namespace) -> None:
    """``--resume`` goes on with the run folder's saved config: only the budget, which conditions go on and how
    many at once may be given with it; any other setting is refused by name instead of being ignored."""
    settings = [*EXPERIMENT_KEYS, "config", "out", "seeds", "seed_list", "hyperparam", "overseer_option",
                "blocker_margin", "blocker_epochs", "pace", "scale"]
    given = [name for name in settings if name not in RESUME_FLAGS and getattr(args, name, None) not in (None, [])]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise SaferlError(f"--resume RUN_DIR goes on with the run folder's saved config: {flags} cannot change it "
                          f"(with --resume give only {', '.join('--' + f.replace('_', '-') for f in RESUME_FLAGS)}); "
                          "start a new experiment with --out for other settings")


def cmd_experiment(args: argparse.Namespace) -> int:
    from saferl.errors import OversightQuit
    from saferl.experiment.config import ExperimentConfig
    from saferl.experiment.pool import run_experiment

    if args.resume:
        check_resume_flags(args)
    if not args.resume and not args.out:
        raise SaferlError("give --out RUN_DIR for a new experiment, or --resume RUN_DIR to finish one")
    config = None
    if not args.resume:
        config = ExperimentConfig.from_dict(experiment_data(args), args.config or "the command line")
        writable_dir(args.out, "--out")
    out = args.resume or args.out
    started = time.perf_counter()
    try:
        rows = run_experiment(config, out, resume=bool(args.resume), progress=not args.no_progress,
                              allow_degenerate_blocker=args.allow_degenerate_blocker,
                              total_steps=args.total_steps if args.resume else None,
                              conditions=comma_separated(args.conditions) if args.resume and args.conditions else None,
                              workers=args.workers if args.resume else None)
    except OversightQuit:
        print(f"saferl: the overseer quit; the labels and a checkpoint are saved: continue with "
              f"saferl experiment --resume {out}", file=sys.stderr)
        return 130
    print(f"report: {Path(out) / 'report.md'} ({time.perf_counter() - started:,.0f} s)")
    for row in rows:
        shown = {k: row[k] for k in ("catastrophes", "catastrophes_during_human", "catastrophes_after_human",
                                     "false_negatives", "blocks", "human_labels", "mean_return", "frames")}
        print_summary(f"{row['condition']}, seed {row['seed']}", shown, False)
    if args.json:
        print(json.dumps({"run_dir": str(out), "runs": rows}, default=str))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from saferl.experiment.sweep import run_sweep

    writable_dir(args.out, "--out")
    result = run_sweep(args.config, args.out, address=args.address, cpus_per_trial=args.cpus_per_trial,
                       gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent)
    print(f"sweep report: {Path(args.out) / 'sweep.md'}")
    for row in result["rows"]:
        figures = {key: row[key]["iqm"] for key in ("catastrophes", "catastrophes_after_human", "mean_return")}
        print_summary(f"{row['game']} {row['agent']} {row['condition']} ({row['seeds']} seeds, IQM)", figures, False)
    if args.json:
        print(json.dumps(result, default=str))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from saferl.experiment.report import write_report

    rows = write_report(args.dir)
    print(f"wrote {Path(args.dir) / 'report.md'}, report.json and plots/ ({len(rows)} runs)")
    if args.json:
        print(json.dumps({"run_dir": str(args.dir), "runs": rows}, default=str))
    return 0
