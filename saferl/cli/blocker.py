"""The Blocker's commands: ``train-blocker``, ``eval-blocker``, ``replay-deferring`` and ``attack-blocker``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saferl.cli.common import print_summary
from saferl.files import writable_dir

#: The train-blocker flags that set a field of :class:`~saferl.blocker.TrainConfig` of the same name; their parser
#: default is None, so that the defaults live in TrainConfig alone.
TRAIN_CONFIG_FLAGS = ("epochs", "batch_size", "learning_rate", "patience", "balance", "seed", "device", "threads")


def cmd_train_blocker(args: argparse.Namespace) -> int:
    from saferl.blocker import ModelConfig, TrainConfig, default_model_config, default_preprocessing, fit_blocker
    from saferl.blocker.io import ModelRecord
    from saferl.games import get_game
    from saferl.schema import validate

    game = get_game(args.game)
    out = writable_dir(args.out, "--out")
    given = {name: getattr(args, name) for name in TRAIN_CONFIG_FLAGS}
    config = TrainConfig(**{name: value for name, value in given.items() if value is not None},
                         progress=not args.no_progress)  # a flag not given keeps TrainConfig's default
    defaults = default_model_config(game.name)
    model = ModelConfig(defaults.convs, args.filters or defaults.filters, args.fc or defaults.fc,
                        defaults.dropout if args.dropout is None else args.dropout)
    validate(ModelRecord, model.to_dict(), "--filters / --fc", "give a size a saved Blocker may have")
    preprocessing = default_preprocessing(game.name, color=args.color, stack=args.stack, center=args.center)
    result = fit_blocker(args.labels, game.name, out, preprocessing, model, config, margin=args.margin,
                         folds=args.folds, novelty=not args.no_novelty, misses=args.misses)
    print(result.test.table())
    summary = {**result.summary(), "out": str(out)}
    print_summary(f"Blocker for {game.name} in {out} (figures on the test episodes)", summary, args.json)
    if result.alarm:
        print(f"saferl: ALARM: {result.alarm}; saferl experiment will not hand over to it", file=sys.stderr)
    return 0


def cmd_eval_blocker(args: argparse.Namespace) -> int:
    from saferl.blocker import evaluate_blocker
    from saferl.blocker.ensemble import load_scorer

    blocker = load_scorer(args.dir)
    plots = writable_dir(args.plots or args.dir, "--plots")
    result = evaluate_blocker(blocker, args.labels, plots)
    print(result.evaluation.table())
    print_summary(f"Blocker {args.dir} on held-out episodes", {"game": blocker.game, **result.summary()}, args.json)
    return 0


def cmd_replay_deferring(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from saferl.blocker.deferral_replay import deferral_config, replay_deferral
    from saferl.labels.store import LabelStore

    config = deferral_config(args.overseer_option or [])
    LabelStore.open(args.labels).close()  # a wrong folder fails before the progress bar shows
    with tqdm(total=args.limit, unit="decision", disable=args.no_progress, desc="replay") as bar:
        result = replay_deferral(args.labels, config, n_envs=args.envs, limit=args.limit, seed=args.seed,
                                 progress=lambda done: bar.update(done - bar.n))
    print_summary(f"The deferring overseer on the decisions of {args.labels}", result.summary(), args.json)
    return 0


def cmd_attack_blocker(args: argparse.Namespace) -> int:
    from saferl.attack import attack_blocker, parse_methods

    summary = attack_blocker(args.dir, args.game, parse_methods(args.method), steps=args.steps, out=args.out,
                             seed=args.seed, n_envs=args.n_envs, max_frames=args.frames, policies=args.policies,
                             train_steps=args.train_steps, epsilons=args.epsilons, progress=not args.no_progress)
    shown = {f"{method} {key}": value for method, row in summary["methods"].items() for key, value in row.items()}
    print_summary(f"attacks on {args.dir} (report: {Path(summary['out']) / 'report.md'})", shown, False)
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


def epsilons(text: str) -> tuple[int, ...]:
    """Comma-separated whole pixel levels, e.g. ``1,2,4,8``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write whole pixel levels separated by commas, e.g. 1,2,4,8") from None
