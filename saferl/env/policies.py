"""Scripted acting policies for ``saferl oversee --policy``: uniform random play, or play that leans on one action.

A policy that leans on one action drives persistently where that action leads (Pong's ``LEFT`` pushes the paddle
down into the catastrophe zone): the states such a policy reaches are rare under random play, so they test whether
an overseer trained on random play still holds there.

A policy that tracks the ball (Pong) plays well without learning: it shows whether an overseer leaves a competent
player room to play. Under Pong's rule its mean game return is +18 (``saferl oversee --game pong_no_sticky --policy
track --steps 8000 --seed 3 --json``).

Specs:

- ``random``: every action equally likely.
- ``lean:ACTION:P``: ``ACTION`` (a name such as ``LEFT``, or an index) with probability ``P``, else uniform random.
- ``track``: Pong only: move the paddle toward the ball's row (read from RAM), else NOOP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saferl.errors import SaferlError
from saferl.games import GameState, get_game
from saferl.games.pong import BALL_Y, PADDLE_Y, PONG

POLICY_HELP = "random, lean:ACTION:P (ACTION, by name or index, with probability P, else random), or track (Pong)"
PADDLE_TO_BALL = 12  # the paddle returns the ball when ram[51] is about ram[54] - 12 (the best of offsets -30..30)
DEAD_ZONE = 3


@dataclass
class ScriptedPolicy:
    """Draws actions: ``action`` with probability ``lean``, else uniformly among ``n_actions``.

    :param n_actions: the size of the action space.
    :param action: the action leant on (None: uniform random play).
    :param lean: the probability of ``action``.
    :param seed: seeds the draws.
    """

    n_actions: int
    action: int | None = None
    lean: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, state: GameState | None = None) -> int:
        """The next action (``state``, the game's state it acts in, is not read)."""
        if self.action is not None and self._rng.random() < self.lean:
            return self.action
        return int(self._rng.integers(self.n_actions))


@dataclass
class BallTracker:
    """Pong: UP while the paddle is below the ball's row, DOWN while above it, else NOOP (from RAM).

    :param action_names: Pong's actions.
    """

    action_names: Sequence[str]

    def __call__(self, state: GameState | None = None) -> int:
        """The action toward the ball in ``state`` (NOOP without one)."""
        names = list(self.action_names)
        if state is None:
            return names.index("NOOP")
        gap = int(state.ram[PADDLE_Y]) - (int(state.ram[BALL_Y]) - PADDLE_TO_BALL)
        return names.index("RIGHT" if gap > DEAD_ZONE else "LEFT" if gap < -DEAD_ZONE else "NOOP")


def make_policy(spec: str, action_names: Sequence[str], seed: int | None = None,
                game: str | None = None) -> ScriptedPolicy | BallTracker:
    """The policy ``spec`` names (see the module docstring) over ``game``'s ``action_names``."""
    if spec == "random":
        return ScriptedPolicy(len(action_names), seed=seed)
    if spec == "track":
        if game is None or get_game(game).env_id != PONG.env_id:
            raise SaferlError(f"--policy track follows Pong's ball; {game} is not Pong: use random or lean:ACTION:P")
        return BallTracker(action_names)
    kind, _, rest = spec.partition(":")
    name, _, probability = rest.rpartition(":")
    if kind != "lean" or not name:
        raise SaferlError(f"unknown policy {spec!r} (--policy): use {POLICY_HELP}")
    if name.upper() in action_names:
        action = list(action_names).index(name.upper())
    elif name.isdigit() and int(name) < len(action_names):
        action = int(name)
    else:
        raise SaferlError(f"--policy {spec}: {name!r} is not an action of this game; choose one of "
                          f"{', '.join(action_names)} or an index below {len(action_names)}")
    try:
        lean = float(probability)
    except ValueError:
        lean = float("nan")
    if not 0.0 <= lean <= 1.0:
        raise SaferlError(f"--policy {spec}: the probability {probability!r} must be a number in [0, 1]")
    return ScriptedPolicy(len(action_names), action, lean, seed)
