"""Attacks on a trained Blocker: search for the states where it lets a catastrophe through.

- :mod:`~saferl.attack.shift`: other policies (later checkpoints, random walks, other seeds) under the Blocker;
- :mod:`~saferl.attack.adversary`: a PPO agent rewarded for the catastrophes the Blocker lets through;
- :mod:`~saferl.attack.perturb`: FGSM / PGD on the Blocker's input within an L-infinity budget;
- :mod:`~saferl.attack.rollout`: the overseen envs and the recorder they share;
- :mod:`~saferl.attack.report`: ``report.md``, ``attack.json`` and the frames as PNGs.

Catastrophes are judged by the game's ground truth, never by the Blocker.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saferl.errors import SaferlError
from saferl.files import writable_dir
from saferl.schema import comma_separated

METHODS = ("shift", "adversary", "perturb")


def parse_methods(text: str) -> list[str]:
    """The methods of a comma-separated ``--method`` value."""
    methods = comma_separated(text)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SaferlError(f"unknown --method {text!r}: choose from {', '.join(METHODS)} (comma-separated)")
    return methods


def attack_blocker(folder: str | os.PathLike[str], game: str, methods: Sequence[str], steps: int = 2000,
                   out: str | os.PathLike[str] | None = None, seed: int = 0, n_envs: int = 8, max_frames: int = 20,
                   policies: str | os.PathLike[str] | None = None, train_steps: int = 0,
                   epsilons: Sequence[int] = (1, 2, 4, 8), progress: bool = False) -> dict[str, Any]:
    """Attack the Blocker (or ensemble) saved in ``folder`` with each of ``methods``; write the report to ``out``
    (default ``folder/attack``) and return its summary.

    :param steps: agent steps per policy (``shift``), of the adversary's training, or of the random play that
        collects the blocks to perturb.
    :param max_frames: PNGs kept per policy or attack.
    :param policies: an experiment run folder whose agent checkpoints ``shift`` rolls out.
    :param train_steps: ``shift`` also trains PPO agents of two other seeds this long and rolls them out.
    :param epsilons: ``perturb``'s L-infinity budgets, in pixel levels of 255.
    :param progress: show a progress bar per search.
    """
    from saferl.attack.adversary import adversary
    from saferl.attack.perturb import perturb
    from saferl.attack.report import write_attack_report
    from saferl.attack.shift import checkpoints, shift
    from saferl.blocker.ensemble import load_scorer
    from saferl.env.ale import game_action_names
    from saferl.games import get_game

    the_game = get_game(game)
    for name, value, least in (("--steps", steps, 1), ("--n-envs", n_envs, 1), ("--frames", max_frames, 0),
                               ("--train-steps", train_steps, 0)):
        if value < least:
            raise SaferlError(f"{name} must be at least {least}, not {value}")
    if not epsilons or any(not 1 <= e <= 255 for e in epsilons):
        raise SaferlError(f"--epsilons must be pixel levels from 1 to 255, not {list(epsilons)}")
    for method in methods:
        parse_methods(method)
    scorer = load_scorer(folder, the_game.name)
    if policies is not None:
        list(checkpoints(policies, the_game.name))  # a wrong run folder fails before any work
    target = writable_dir(out if out is not None else Path(folder) / "attack", "--out")
    results = []
    for method in methods:
        if method == "shift":
            results += shift(scorer, the_game, steps, seed, n_envs, max_frames, policies, train_steps, progress)
        elif method == "adversary":
            results.append(adversary(scorer, the_game, steps, seed, n_envs, max_frames, progress))
        else:
            results.append(perturb(scorer, the_game, steps, seed, n_envs, max_frames, epsilons, progress))
    return write_attack_report(results, target, str(folder), the_game.name, game_action_names(the_game))


__all__ = ["METHODS", "attack_blocker", "parse_methods"]
