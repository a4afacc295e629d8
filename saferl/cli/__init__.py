"""The ``saferl`` command: :func:`main`, the argument parser of every command, and one-line errors.

The handlers live by topic (``oversee``, ``labels``, ``blocker``, ``experiment``; shared helpers in ``common``);
each parses its arguments, calls the library and prints a summary (``--json``: also one JSON object).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from saferl.cli.blocker import cmd_attack_blocker, cmd_eval_blocker, cmd_replay_deferring, cmd_train_blocker, epsilons
from saferl.cli.common import key_value, natural, positive, seed_list, widths
from saferl.cli.experiment import cmd_experiment, cmd_report, cmd_sweep
from saferl.cli.labels import cmd_labels, cmd_review
from saferl.cli.oversee import cmd_evaluate, cmd_games, cmd_oversee
from saferl.errors import SaferlError
from saferl.files import removing_created_folders_on_error
from saferl.games import GAMES


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (``saferl CMD: error: ...; see saferl CMD --help``)
    and exit code 2, like every other error of saferl."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``saferl`` command."""
    from saferl.env.policies import POLICY_HELP
    from saferl.oversight.intervention import Mode
    from saferl.registry import OVERSEERS

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
    oversee.add_argument("--game", required=True, help=", ".join(GAMES))
    oversee.add_argument("--overseer", default="scripted",
                         help=f"who reviews each action: {', '.join(OVERSEERS)} (a person in a window), or "
                              "blocker:DIR (a trained Blocker)")
    oversee.add_argument("--overseer-option", action="append", type=key_value, metavar="KEY=VALUE",
                         help="an option of the overseer, e.g. prefer=0 (lookahead, blocker:DIR: the replacement "
                              "tried first); repeatable")
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
    train.add_argument("--epochs", type=positive, help="at most this many epochs (early stopping on val loss)")
    train.add_argument("--patience", type=positive,
                       help="epochs without a lower validation loss before stopping")
    train.add_argument("--batch-size", type=positive)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--filters", type=positive,
                       help="filters per convolution (default: the paper's, 4 for Pong and 16 for the others)")
    train.add_argument("--fc", type=widths, metavar="W[,W...]",
                       help="widths of the fully connected layers (default: the paper's, 10,10 for Pong and 20,20 for "
                            "the others)")
    train.add_argument("--dropout", type=float,
                       help="dropout after every hidden layer (default: the paper's 0.5 for Pong, 0.1 for the others)")
    train.add_argument("--balance", choices=("weight", "sample"),
                       help="rebalance blocks by loss weights (the paper) or by sampling")
    train.add_argument("--color", default="rgb", choices=("rgb", "gray"), help="frames as RGB (the paper) or gray")
    train.add_argument("--stack", type=positive, default=1, help="frames per input (e.g. --color gray --stack 4)")
    train.add_argument("--center", action=argparse.BooleanOptionalAction, default=None,
                       help="shift each frame so the player sits in the middle: sideways, and up or down for a "
                            "player that moves so (Road Runner) (default: on for Space Invaders and Road Runner)")
    train.add_argument("--misses", type=natural, default=0,
                       help="out-of-fold blocks the threshold may miss, the lowest-scored (default 0: none); the "
                            "summary lists them to review, and the promised false-negative rate counts them")
    train.add_argument("--margin", type=float, default=0.0,
                       help="safety margin: lower the threshold to also block this fraction of the out-of-fold "
                            "passes (e.g. 0.01)")
    train.add_argument("--seed", type=natural, help="seeds the split, the weights and the batches")
    train.add_argument("--folds", type=int, default=3, metavar="K",
                       help="deal the episodes into K folds; one member per fold, trained on the others; it blocks "
                            "when any member would (default 3)")
    train.add_argument("--no-novelty", action="store_true",
                       help="no novelty check: only the members' scores decide, also in states unlike the labels "
                            "(a learning agent's states drift from its human phase's)")
    train.add_argument("--device", help="auto (cuda when present), cpu or cuda")
    train.add_argument("--threads", type=positive, help="CPU threads for torch (default: torch's choice)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = command("eval-blocker", cmd_eval_blocker,
                       "Evaluate a trained Blocker on the episodes of label stores it was not trained on.")
    evaluate.add_argument("dir", help="the Blocker folder (saferl train-blocker --out DIR)")
    evaluate.add_argument("labels", nargs="+", help="label store folders")
    evaluate.add_argument("--plots", help="folder for the precision-recall plot (default: the Blocker folder)")

    experiment = command("experiment", cmd_experiment,
                         "Run the HIRL experiment (none, penalty_only, hirl) per seed, with a report and plots.")
    experiment.add_argument("--config", help="an experiment YAML (experiments/*.yml); flags override its values")
    experiment.add_argument("--game", help=f"{', '.join(GAMES)} (default pong)")
    experiment.add_argument("--agent", help="dqn, a2c, ppo or a3c (default dqn)")
    experiment.add_argument("--overseer", help="who oversees in HIRL's first phase and gives penalty_only its "
                            "penalties: scripted, lookahead or human (a person in a window; dqn, a2c or ppo with "
                            "--workers 1), or deferring (its Blocker ensemble asks one of those only where it is "
                            "unsure; see --overseer-option) (default scripted)")
    experiment.add_argument("--conditions", help="comma-separated, from none, penalty_only, hirl (default all); with "
                            "--resume, the runs that go on (the others stay as they are)")
    seeds = experiment.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=positive, help="runs per condition, seeds 0..K-1 (default 1)")
    seeds.add_argument("--seed-list", type=seed_list, help="the seeds to run, comma-separated (1,2: seeds 1 and 2)")
    experiment.add_argument("--oversight-steps", type=positive, help="agent steps of oversight before the Blocker takes over")
    experiment.add_argument("--total-steps", type=positive, help="agent steps per run, all phases; with --resume, "
                            "raise the budget: finished runs go on from their last checkpoint")
    experiment.add_argument("--mode", choices=[mode.value for mode in Mode if mode.enforces],
                            help="how HIRL blocks (default replace)")
    experiment.add_argument("--penalty", type=float, help="reward added to a blocked step (default -1)")
    experiment.add_argument("--block-penalty", type=float,
                            help="hirl's reward for a blocked step, when it differs from --penalty (which then "
                                 "stays penalty_only's)")
    experiment.add_argument("--device", help="auto (cuda when present), cpu or cuda")
    experiment.add_argument("--workers", type=positive, help="runs trained at once, in separate processes (default 1; "
                            "with --resume, the saved config's)")
    experiment.add_argument("--threads", type=positive, help="torch CPU threads per run (default 1)")
    experiment.add_argument("--checkpoint-every", type=positive, help="agent steps between checkpoints (default 10,000)")
    experiment.add_argument("--blocker-margin", type=float, help="safety margin below the zero-FN threshold")
    experiment.add_argument("--blocker-epochs", type=positive, help="at most this many Blocker epochs")
    experiment.add_argument("--allow-degenerate-blocker", action="store_true",
                            help="hand over to a Blocker whose degeneration alarm is raised (it blocks far more than "
                                 "its teacher); without it the run stops at the handover (also with --resume)")
    experiment.add_argument("--hyperparam", action="append", type=key_value, metavar="KEY=VALUE",
                            help="override an agent hyperparameter (repeatable), e.g. learning_starts=5000")
    experiment.add_argument("--overseer-option", action="append", type=key_value, metavar="KEY=VALUE",
                            help="an option of the overseer (repeatable), e.g. seconds_per_decision=0.5; for "
                                 "deferring: asker=scripted, first_fit=400, 'asker_options={seconds_per_decision: 0.5}'")
    human_window(experiment)
    experiment.add_argument("--out", help="the run folder (created)")
    experiment.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted experiment from its checkpoints, "
                            "with its saved config (only --total-steps, --conditions and --workers may be given)")
    experiment.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    replay = command("replay-deferring", cmd_replay_deferring,
                     "Replay a watch-every-frame run's labels through the deferring overseer: how many it would "
                     "have asked for, and the blocks its ensemble would have let pass unasked (an estimate, in "
                     "minutes, without the agent).")
    replay.add_argument("labels", help="the label store of a run whose overseer looked at every frame")
    replay.add_argument("--overseer-option", action="append", type=key_value, metavar="KEY=VALUE",
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
    attack.add_argument("--epsilons", type=epsilons, default=(1, 2, 4, 8),
                        help="perturb: L-infinity budgets in pixel levels of 255 (default 1,2,4,8)")
    attack.add_argument("--frames", type=positive, default=20, help="PNGs kept per policy or attack (default 20)")
    attack.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    evaluate = command("evaluate", cmd_evaluate, "Play a saved agent for whole episodes, with or without an overseer: "
                                                 "its returns, catastrophes and blocks, and a GIF of its play.")
    evaluate.add_argument("agent_dir", metavar="AGENT_DIR",
                          help="a saved agent: RUN/runs/<condition>/seed-<k>/agent of a finished experiment")
    evaluate.add_argument("--game", required=True, help="the agent's game")
    evaluate.add_argument("--overseer", default="none", help="who reviews its actions: none, scripted, lookahead "
                          "or blocker:DIR (blocked actions are replaced)")
    evaluate.add_argument("--episodes", type=positive, default=3, help="whole episodes to play (default 3)")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the most probable")
    evaluate.add_argument("--seed", type=natural, default=0)
    evaluate.add_argument("--video", metavar="FILE.gif", help="write the frames (every second one) as a GIF, blocks "
                          "framed in red")
    evaluate.add_argument("--max-frames", type=positive, help="ALE frames an episode may last (default: the game's end)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")

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


__all__ = ["OneLineParser", "build_parser", "main"]
