"""Scripted acting policies for ``saferl oversee --policy``: uniform random play, or play that leans on one action.

A policy that leans on one action drives persistently where that action leads (Pong's ``LEFT`` pushes the paddle
down into the catastrophe zone): the states such a policy reaches are rare under random play, so they test whether
an overseer trained on random play still holds there.

Specs:

- ``random``: every action equally likely.
- ``lean:ACTION:P``: ``ACTION`` (a name such as ``LEFT``, or an index) with probability ``P``, else uniform random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saferl.errors import SaferlError

POLICY_HELP = "random, or lean:ACTION:P (ACTION, by name or index, with probability P, else random)"


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

    def __call__(self) -> int:
        """The next action."""
        if self.action is not None and self._rng.random() < self.lean:
            return self.action
        return int(self._rng.integers(self.n_actions))


def make_policy(spec: str, action_names: Sequence[str], seed: int | None = None) -> ScriptedPolicy:
    """The policy ``spec`` names (see the module docstring) over a game's ``action_names``."""
    if spec == "random":
        return ScriptedPolicy(len(action_names), seed=seed)
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
