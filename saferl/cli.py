"""The ``saferl`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence


from saferl.errors import SaferlError
from saferl.files import removing_created_folders_on_error, writable_dir


def _print_summary(title: str, summary: dict[str, Any], as_json: bool) -> None:
    """Print ``summary`` for a person, and with ``as_json`` also as one JSON object on the last line."""
    print(title)
    width = max(len(key) for key in summary) if summary else 0
    for key, value in summary.items():
        shown = (f"{value:,.1f}" if abs(value) >= 1 else f"{value:.5g}") if isinstance(value, float) else value
        print(f"  {key:<{width}}  {shown}")
    if as_json:
        print(json.dumps(summary, default=str))


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (``saferl CMD: error: ...; see saferl CMD --help``)
    and exit code 2, like every other error of saferl."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def natural(text: str) -> int:
    """A whole number >= 0 (a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: give a whole number >= 0")
    return value


def positive(text: str) -> int:
    """A whole number >= 1 (steps, envs, epochs)."""
    value = natural(text)
    if value < 1:
        raise argparse.ArgumentTypeError("0 is not allowed: give a whole number >= 1")
    return value


def cmd_games(args: argparse.Namespace) -> int:
    from saferl.games import GAMES

    rows = {name: game.describe() for name, game in GAMES.items()}
    for name, row in rows.items():
        print(f"{name}  ({row['env_id']})")
        print(f"  catastrophe:   {row['catastrophe']}")
        print(f"  blocking rule: {row['blocking_rule']}")
        if row.get("episode_ends"):
            print(f"  episode ends:  {row['episode_ends']}")
    if args.json:
        print(json.dumps({"games": rows}))
    return 0


def _human_options(args: argparse.Namespace, overseer: str) -> dict[str, Any]:
    """The human window's options given on the command line (--pace, --scale, --blocker)."""
    options = {key: getattr(args, key, None) for key in ("pace", "scale", "blocker")}
    options = {key: value for key, value in options.items() if value is not None}
    if options and overseer != "human":
        flags = ", ".join(f"--{key}" for key in options)
        raise SaferlError(f"{flags}: only the human overseer's window takes this; use --overseer human, "
                          f"not {overseer}")
    return options


def cmd_oversee(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from saferl.env.ale import action_names, game_action_names
    from saferl.oversight.envs import make_overseen_env
    from saferl.games import get_game
    from saferl.human_ui import OversightQuit
    from saferl.registry import make_overseer
    from saferl.oversight.intervention import Mode
    from saferl.oversight.metrics import block_rate
    from saferl.env.policies import make_policy

    game = get_game(args.game)
    Mode.parse(args.mode)
    make_policy(args.policy, game_action_names(game))  # a bad --policy fails before any work
    if args.steps < 1:
        raise SaferlError(f"--steps must be at least 1, not {args.steps}")
    overseer = make_overseer(args.overseer, seed=args.seed, game=game.name, **_human_options(args, args.overseer))
    store = None
    if args.out is not None:
        from saferl.labels.store import LabelStore

        folder = writable_dir(args.out, "--out")
        if overseer is not None:
            store = LabelStore.open_or_create(folder, game=game.name, action_names=game_action_names(game))
    human = args.overseer == "human"
    if human:
        overseer.label_store = store  # undo relabels the person's stored blocks
    first_episode = int(store.arrays()["episode"].max()) + 1 if store is not None and len(store) else 0
    env = make_overseen_env(
        game, overseer, mode=args.mode, penalty=args.penalty, label_store=store, seed=args.seed, first_episode=first_episode
    )
    env.reset(seed=args.seed)
    policy = make_policy(args.policy, action_names(env), seed=args.seed)
    start = time.perf_counter()
    quit_ = False
    try:
        for _ in tqdm(range(args.steps), desc=f"oversee {game.name}", unit="step", disable=args.no_progress):
            _, _, terminated, truncated, _ = env.step(policy())
            if terminated or truncated:
                env.reset()
    except OversightQuit:
        quit_ = True  # the person quit the window: what was decided is stored, the summary follows
    finally:
        elapsed = time.perf_counter() - start
        counters = env.counters
        env.close()
        if store is not None:
            store.close()
    summary = {
        "game": game.name,
        "overseer": args.overseer,
        "mode": args.mode,
        "policy": args.policy,
        "steps": int(counters.totals["steps"]),
        "catastrophes": int(counters.totals["catastrophes"]),
        "catastrophes_on_blocks": int(counters.totals["catastrophes_on_blocks"]),
        "blocks": int(counters.totals["blocks"]),
        "block_rate": block_rate(counters.totals),
        "false_negatives": int(counters.totals["false_negatives"]),
        "false_positives": int(counters.totals["false_positives"]),
        "labels": int(counters.totals["labels"]),
        "episodes": len(counters.episodes),
        "steps_per_second": round(counters.totals["steps"] / elapsed, 1),
    }
    if human:
        summary.update(human_seconds=round(float(counters.totals["human_seconds"]), 1), quit=quit_)
    _print_summary(f"oversee {game.name} with {args.overseer} ({args.mode})", summary, args.json)
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    from saferl.labels.store import LabelStore

    if not args.check and args.salvage is None:
        with LabelStore.open(args.dir) as store:
            summary = store.summary()
        _print_summary(f"label store {args.dir}", summary, args.json)
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
    _print_summary(title, {key: value for key, value in report.items() if key != "damage"}, False)
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


def cmd_train_blocker(args: argparse.Namespace) -> int:
    from saferl.blocker import ModelConfig, TrainConfig, default_model_config, default_preprocessing, fit_blocker
    from saferl.games import get_game

    game = get_game(args.game)
    out = writable_dir(args.out, "--out")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         patience=args.patience, balance=args.balance, seed=args.seed, device=args.device,
                         threads=args.threads, progress=not args.no_progress)
    defaults = default_model_config(game.name)
    model = ModelConfig(defaults.convs, defaults.filters, defaults.fc, args.dropout)
    preprocessing = default_preprocessing(game.name, color=args.color, stack=args.stack)
    result = fit_blocker(args.labels, game.name, out, preprocessing, model, config, margin=args.margin,
                         folds=args.folds)
    print(result.test.table())
    summary = {**result.summary(), "out": str(out)}
    _print_summary(f"Blocker for {game.name} in {out} (figures on the test episodes)", summary, args.json)
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
    _print_summary(f"Blocker {args.dir} on held-out episodes", {"game": blocker.game, **result.summary()}, args.json)
    return 0


def _hyperparam(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (numbers, booleans, lists)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. --hyperparam buffer_size=20000")
    return key.strip(), yaml.safe_load(value)


EXPERIMENT_KEYS = ("game", "agent", "overseer", "conditions", "oversight_steps", "total_steps", "mode", "penalty",
                   "device", "workers", "threads", "checkpoint_every")


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
    human = _human_options(args, data.get("overseer", "scripted"))
    if human:
        data["overseer_options"] = {**data.get("overseer_options", {}), **human}
    return data


def cmd_experiment(args: argparse.Namespace) -> int:
    from saferl.human_ui import OversightQuit
    from saferl.experiment.config import ExperimentConfig
    from saferl.experiment.pool import run_experiment

    if args.resume and (args.out or args.config):
        raise SaferlError("--resume RUN_DIR continues a run folder with its saved config: give no --out or --config")
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
                              allow_degenerate_blocker=args.allow_degenerate_blocker)
    except OversightQuit:
        print(f"saferl: the overseer quit; the labels and a checkpoint are saved: continue with "
              f"saferl experiment --resume {out}", file=sys.stderr)
        return 130
    print(f"report: {Path(out) / 'report.md'} ({time.perf_counter() - started:,.0f} s)")
    for row in rows:
        shown = {k: row[k] for k in ("catastrophes", "catastrophes_during_human", "catastrophes_after_human",
                                     "false_negatives", "blocks", "human_labels", "mean_return", "frames")}
        _print_summary(f"{row['condition']}, seed {row['seed']}", shown, False)
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
        _print_summary(f"{row['game']} {row['agent']} {row['condition']} ({row['seeds']} seeds, IQM)", figures, False)
    if args.json:
        print(json.dumps(result, default=str))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from saferl.human_ui import DEFAULT_SCALE
    from saferl.human_ui.review import review_labels
    from saferl.labels.store import LabelStoreError

    try:
        summary = review_labels(args.labels, args.blocker, DEFAULT_SCALE if args.scale is None else args.scale)
    except LabelStoreError as err:
        raise SaferlError(f"LABELS {args.labels}: {err}") from None
    _print_summary(f"review of {args.labels}", summary, args.json)
    return 0


def cmd_attack_blocker(args: argparse.Namespace) -> int:
    from saferl.attack import attack_blocker, parse_methods

    summary = attack_blocker(args.dir, args.game, parse_methods(args.method), steps=args.steps, out=args.out,
                             seed=args.seed, n_envs=args.n_envs, max_frames=args.frames, policies=args.policies,
                             train_steps=args.train_steps, epsilons=args.epsilons, progress=not args.no_progress)
    shown = {f"{method} {key}": value for method, row in summary["methods"].items() for key, value in row.items()}
    _print_summary(f"attacks on {args.dir} (report: {Path(summary['out']) / 'report.md'})", shown, False)
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


def _epsilons(text: str) -> tuple[int, ...]:
    """Comma-separated whole pixel levels, e.g. ``1,2,4,8``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write whole pixel levels separated by commas, e.g. 1,2,4,8") from None


def cmd_replay_deferring(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from saferl.blocker.deferral_replay import deferral_config, replay_deferral
    from saferl.labels.store import LabelStore

    config = deferral_config(args.overseer_option or [])
    LabelStore.open(args.labels).close()  # a wrong folder fails before the progress bar shows
    with tqdm(total=args.limit, unit="decision", disable=args.no_progress, desc="replay") as bar:
        result = replay_deferral(args.labels, config, n_envs=args.envs, limit=args.limit, seed=args.seed,
                                 progress=lambda done: bar.update(done - bar.n))
    _print_summary(f"The deferring overseer on the decisions of {args.labels}", result.summary(), args.json)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from saferl.experiment.report import write_report

    rows = write_report(args.dir)
    print(f"wrote {Path(args.dir) / 'report.md'}, report.json and plots/ ({len(rows)} runs)")
    if args.json:
        print(json.dumps({"run_dir": str(args.dir), "runs": rows}, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``saferl`` command."""
    from saferl.registry import OVERSEERS
    from saferl.oversight.intervention import Mode
    from saferl.env.policies import POLICY_HELP

    parser = OneLineParser(prog="saferl", description="Safe RL with human intervention (HIRL) on Atari.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="also print the summary as one JSON object on the last line")
        sub.set_defaults(handler=handler)
        return sub

    def human_window(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--pace", type=int, metavar="MS",
                         help="with --overseer human: the starting pace, milliseconds per frame (default 500)")
        sub.add_argument("--scale", type=int, metavar="N", help="with --overseer human: zoom of the frame (default 3)")

    command("games", cmd_games, "List the games and their catastrophe and blocking-rule definitions.")

    oversee = command("oversee", cmd_oversee, "Run a policy under oversight, store the labels, print the safety figures.")
    oversee.add_argument("--game", required=True, help="pong, space_invaders or road_runner")
    oversee.add_argument("--overseer", default="scripted",
                         help=f"who reviews each action: {', '.join(OVERSEERS)} (a person in a window), or "
                              "blocker:DIR (a trained Blocker)")
    oversee.add_argument("--policy", default="random", help=f"the acting policy: {POLICY_HELP}")
    oversee.add_argument("--mode", default="replace", choices=[mode.value for mode in Mode], help="what a block does")
    oversee.add_argument("--penalty", type=float, default=-1.0, help="reward added to a blocked step")
    oversee.add_argument("--steps", type=positive, default=5000, help="agent steps to run")
    oversee.add_argument("--seed", type=natural, default=0)
    oversee.add_argument("--out", help="label store folder (created; appended to if it exists)")
    human_window(oversee)
    oversee.add_argument("--blocker", metavar="DIR", help="with --overseer human: show this Blocker's score")
    oversee.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    labels = command("labels", cmd_labels, "Summarize what a label store holds, check every record, or salvage "
                                           "the valid records of a damaged store into a new one.")
    labels.add_argument("dir", help="the label store folder")
    repair = labels.add_mutually_exclusive_group()
    repair.add_argument("--check", action="store_true",
                        help="verify every record (CRC, frame, fields) and report the damaged ones; exit 2 if any")
    repair.add_argument("--salvage", metavar="OUT",
                        help="copy every record that verifies into a new store in folder OUT (new or empty); "
                             "DIR is left unchanged")

    train = command("train-blocker", cmd_train_blocker,
                    "Train a Blocker on label stores: one member per fold of episodes, the zero-false-negative "
                    "threshold on every fold's held-out blocks, a novelty check, figures on test episodes.")
    train.add_argument("labels", nargs="+", help="label store folders (saferl oversee --out DIR)")
    train.add_argument("--game", required=True, help="the game the labels are of")
    train.add_argument("--out", required=True, help="folder for the Blocker, its TensorBoard curves and plots")
    train.add_argument("--epochs", type=positive, default=40,
                       help="at most this many epochs (early stopping on val loss)")
    train.add_argument("--patience", type=positive, default=10,
                       help="epochs without a lower validation loss before stopping")
    train.add_argument("--batch-size", type=positive, default=32)
    train.add_argument("--learning-rate", type=float, default=2e-3)
    train.add_argument("--dropout", type=float, default=0.5, help="dropout after every hidden layer (the paper's 0.5)")
    train.add_argument("--balance", default="weight", choices=("weight", "sample"),
                       help="rebalance blocks by loss weights (the paper) or by sampling")
    train.add_argument("--color", default="rgb", choices=("rgb", "gray"), help="frames as RGB (the paper) or gray")
    train.add_argument("--stack", type=positive, default=1, help="frames per input (e.g. --color gray --stack 4)")
    train.add_argument("--margin", type=float, default=0.0,
                       help="safety margin: lower the threshold to also block this fraction of the out-of-fold "
                            "passes (e.g. 0.01)")
    train.add_argument("--seed", type=natural, default=0, help="seeds the split, the weights and the batches")
    train.add_argument("--folds", type=int, default=3, metavar="K",
                       help="deal the episodes into K folds; one member per fold, trained on the others; it blocks "
                            "when any member would (default 3)")
    train.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    train.add_argument("--threads", type=positive, default=None, help="CPU threads for torch (default: torch's choice)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = command("eval-blocker", cmd_eval_blocker,
                       "Evaluate a trained Blocker on the episodes of label stores it was not trained on.")
    evaluate.add_argument("dir", help="the Blocker folder (saferl train-blocker --out DIR)")
    evaluate.add_argument("labels", nargs="+", help="label store folders")
    evaluate.add_argument("--plots", help="folder for the precision-recall plot (default: the Blocker folder)")

    experiment = command("experiment", cmd_experiment,
                         "Run the HIRL experiment (none, penalty_only, hirl) per seed, with a report and plots.")
    experiment.add_argument("--config", help="an experiment YAML (experiments/*.yml); flags override its values")
    experiment.add_argument("--game", help="pong, space_invaders or road_runner (default pong)")
    experiment.add_argument("--agent", help="dqn, a2c, ppo or a3c (default dqn)")
    experiment.add_argument("--overseer", help="who oversees in HIRL's first phase and gives penalty_only its "
                            "penalties: scripted, lookahead or human (a person in a window; dqn, a2c or ppo with "
                            "--workers 1), or deferring (its Blocker ensemble asks one of those only where it is "
                            "unsure; see --overseer-option) (default scripted)")
    experiment.add_argument("--conditions", help="comma-separated, from none, penalty_only, hirl (default all)")
    experiment.add_argument("--seeds", type=positive, help="runs per condition, seeds 0..K-1 (default 1)")
    experiment.add_argument("--oversight-steps", type=positive, help="agent steps of oversight before the Blocker takes over")
    experiment.add_argument("--total-steps", type=positive, help="agent steps per run, all phases")
    experiment.add_argument("--mode", choices=[mode.value for mode in Mode if mode.enforces],
                            help="how HIRL blocks (default replace)")
    experiment.add_argument("--penalty", type=float, help="reward added to a blocked step (default -1)")
    experiment.add_argument("--device", help="auto (cuda when present), cpu or cuda")
    experiment.add_argument("--workers", type=positive, help="runs trained at once, in separate processes (default 1)")
    experiment.add_argument("--threads", type=positive, help="torch CPU threads per run (default 1)")
    experiment.add_argument("--checkpoint-every", type=positive, help="agent steps between checkpoints (default 10,000)")
    experiment.add_argument("--blocker-margin", type=float, help="safety margin below the zero-FN threshold")
    experiment.add_argument("--blocker-epochs", type=positive, help="at most this many Blocker epochs")
    experiment.add_argument("--allow-degenerate-blocker", action="store_true",
                            help="hand over to a Blocker whose degeneration alarm is raised (it blocks far more than "
                                 "its teacher); without it the run stops at the handover (also with --resume)")
    experiment.add_argument("--hyperparam", action="append", type=_hyperparam, metavar="KEY=VALUE",
                            help="override an agent hyperparameter (repeatable), e.g. learning_starts=5000")
    experiment.add_argument("--overseer-option", action="append", type=_hyperparam, metavar="KEY=VALUE",
                            help="an option of the overseer (repeatable), e.g. seconds_per_decision=0.5; for "
                                 "deferring: asker=scripted, first_fit=400, 'asker_options={seconds_per_decision: 0.5}'")
    human_window(experiment)
    experiment.add_argument("--out", help="the run folder (created)")
    experiment.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted experiment from its checkpoints")
    experiment.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    replay = command("replay-deferring", cmd_replay_deferring,
                     "Replay a watch-every-frame run's labels through the deferring overseer: how many it would "
                     "have asked for, and the blocks its ensemble would have let pass unasked (an estimate, in "
                     "minutes, without the agent).")
    replay.add_argument("labels", help="the label store of a run whose overseer looked at every frame")
    replay.add_argument("--overseer-option", action="append", type=_hyperparam, metavar="KEY=VALUE",
                        help="a deferring option (repeatable), as for saferl experiment, e.g. refit_every=400")
    replay.add_argument("--envs", type=positive, default=4, help="decisions a batch: the recording run's envs (default 4)")
    replay.add_argument("--limit", type=positive, help="replay only the first N labels")
    replay.add_argument("--seed", type=natural, default=0)
    replay.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sweep = command("sweep", cmd_sweep, "Run a grid of experiments (games x agents x conditions x seeds) on Ray Tune.")
    sweep.add_argument("config", help="a sweep YAML: an experiment config with a grid (experiments/sweep_*.yml)")
    sweep.add_argument("--out", required=True, help="the sweep folder (one experiment folder per game and agent)")
    sweep.add_argument("--address", help="a Ray cluster's address (default: a local Ray on this machine)")
    sweep.add_argument("--cpus-per-trial", type=float, default=1.0)
    sweep.add_argument("--gpus-per-trial", type=float, default=0.0)
    sweep.add_argument("--max-concurrent", type=positive, help="trials at once (default: as many as the CPUs allow)")

    review = command("review", cmd_review, "Browse a label store in a window, jump to blocks and to a Blocker's "
                                           "false negatives and positives, and relabel (saved as overlays).")
    review.add_argument("labels", help="the label store folder (saferl oversee --out DIR)")
    review.add_argument("--blocker", metavar="DIR", help="a trained Blocker: show its scores and find its mistakes")
    review.add_argument("--scale", type=int, metavar="N", help="zoom of the frame (default 3)")

    attack = command("attack-blocker", cmd_attack_blocker,
                     "Search for states where a trained Blocker lets a catastrophe through (judged by the game's "
                     "ground truth): other policies, an adversarial agent, perturbed frames; report.md and PNGs.")
    attack.add_argument("dir", help="the Blocker (or ensemble) folder")
    attack.add_argument("--game", required=True, help="the Blocker's game")
    attack.add_argument("--method", required=True,
                        help="shift (other policies), adversary (PPO rewarded for catastrophes let through), perturb "
                             "(FGSM / PGD on the frames); several comma-separated")
    attack.add_argument("--steps", type=positive, default=2000,
                        help="agent steps per policy (shift), of the adversary's training, or of the play that "
                             "collects blocks to perturb (default 2,000)")
    attack.add_argument("--out", help="folder for report.md, attack.json and frames/ (default DIR/attack)")
    attack.add_argument("--seed", type=natural, default=0)
    attack.add_argument("--n-envs", type=positive, default=8, help="envs stepped together (default 8)")
    attack.add_argument("--policies", metavar="RUN_DIR",
                        help="shift: also roll out the agent checkpoints of this saferl experiment run folder")
    attack.add_argument("--train-steps", type=natural, default=0,
                        help="shift: also train PPO agents of two other seeds this many steps and roll them out")
    attack.add_argument("--epsilons", type=_epsilons, default=(1, 2, 4, 8),
                        help="perturb: L-infinity budgets in pixel levels of 255 (default 1,2,4,8)")
    attack.add_argument("--frames", type=positive, default=20, help="PNGs kept per policy or attack (default 20)")
    attack.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    report = command("report", cmd_report, "Write report.md, report.json and plots of an experiment's run folder.")
    report.add_argument("dir", help="the run folder (saferl experiment --out DIR)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saferl`` console script; bad input exits with code 2 and one clear message."""
    args = build_parser().parse_args(argv)
    try:
        with removing_created_folders_on_error():
            return args.handler(args)
    except SaferlError as err:
        message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"saferl: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saferl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug, not bad input: one line, the traceback on request
        if os.environ.get("SAFERL_DEBUG"):
            raise
        print(f"saferl: internal error: {type(err).__name__}: {err} (a bug in saferl: rerun with SAFERL_DEBUG=1 "
              "for the traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
