"""The deferring overseer's settings (``overseer_options`` of ``--overseer deferring``): when it asks, how often it
refits, and its probation; see :mod:`saferl.blocker.deferring`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from saferl.errors import SaferlError
from saferl.schema import comma_separated


def prior_stores(prior: Any) -> list[str]:
    """The label store folders of a ``prior`` option (comma-separated)."""
    return comma_separated(str(prior or ""))


@dataclass(frozen=True)
class DeferralConfig:
    """When the deferring overseer asks, and how it trains its ensemble (``overseer_options`` keys).

    :param members: Blockers in the ensemble (at least 2 for disagreement).
    :param disagreement: ask when the members' block probabilities spread more than this (std; 0.5 never).
    :param band: ask when the mean block logit is within this many logits of the threshold (0: never).
    :param novelty: ask when a frame is this many times farther from the labelled frames than usual (0: never).
    :param ask_blocks: the share of the unsure decisions on which the ensemble would block that are asked; the
        rest it blocks unasked (a false positive costs the agent an action, a false negative a catastrophe: below
        1 fewer labels go to states the ensemble already keeps the agent out of). Measured at 0.25 (Road Runner,
        Space Invaders): 30% fewer labels, but the ensemble's replacement actions ran into catastrophes a person's
        would have avoided, and its many unasked blocks taught a Space Invaders agent to score nothing.
    :param split_votes: ask when one member would block and another pass (each at its own threshold). At a low
        threshold (Road Runner's block probability is about 0.05) one member can block while the spread of the
        probabilities stays small. Measured with ``probation`` -1 on Space Invaders: neither caught the false
        negatives that undertrained members let through (2 by step 31,228); 1,000 ``updates`` did (0 in 50,000).
    :param probation: decisions after each retraining in which the previous ensemble is consulted too, and a pass
        it would have blocked is asked (0: never; -1: until the next retraining). The catastrophes that deferring
        runs let through while the person was on duty came soon after a retraining (Space Invaders, Road Runner,
        measured). At 4,000 (one Space Invaders run) it asked 340 decisions and missed the one catastrophe, 1,100
        steps after a retraining; at -1 (with ``split_votes``) it missed 2.
    :param hindsight: after a catastrophe, ask about the ensemble's own last this many decisions in that episode
        (0: never; see the module docstring). The asker judges past states, so it must not need the live emulator.
    :param novelty_memory: at most this many labelled frames (a random sample) are compared against.
    :param first_fit: labels before the first ensemble is trained (every decision is asked until then; when
        the labels cannot make one yet, it tries again every 100 labels).
    :param refit_every: new labels between retrainings.
    :param updates: gradient steps per member and training, at the least (few labels make short epochs: a
        fixed number of epochs would leave the first ensembles untrained and unsure everywhere). Each member
        trains them all and keeps its epoch of least held-out loss: the small Pong CNN can sit on a plateau
        for a few hundred steps before it learns, which early stopping took for the end (measured). With 300,
        three Space Invaders runs let 1-2 shots through while the person was on duty; with 1,000 none.
    :param segment: agent steps of one episode that stay together in the train / validation split.
    :param margin: safety margin below the zero-false-negative threshold (see ``train-blocker --margin``).
    :param device: where the ensemble trains and runs (``auto``: cuda when present).
    :param prior: label stores of earlier runs of the same game (folders, comma-separated; "" none): the first
        ensemble is trained on their labels before the first decision, so that a short human phase is not spent
        asking about everything. They train every later ensemble too, and are not counted as asked.
    """

    members: int = 3
    disagreement: float = 0.05
    band: float = 1.0
    novelty: float = 1.0
    ask_blocks: float = 1.0
    split_votes: bool = False
    probation: int = 0
    hindsight: int = 0
    novelty_memory: int = 4096
    first_fit: int = 400
    refit_every: int = 400
    updates: int = 1000
    segment: int = 100
    margin: float = 0.0
    device: str = "auto"
    prior: str = ""

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> DeferralConfig:
        """The config of ``overseer_options`` (``--overseer-option``) keys; an unknown key is named in the error."""
        try:
            return cls(**options)
        except TypeError as err:
            raise SaferlError(f"bad options {options} for the deferring overseer (overseer_options, "
                              f"--overseer-option): {err}") from None

    @property
    def prior_stores(self) -> list[str]:
        """The folders of :attr:`prior`."""
        return prior_stores(self.prior)

    def __post_init__(self) -> None:
        if self.members < 2:
            raise SaferlError(f"the deferring overseer needs members >= 2 (overseer_options), not {self.members}")
        for name in ("disagreement", "band", "novelty", "margin"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise SaferlError(f"overseer_options {name} must be a finite number >= 0, not {getattr(self, name)}")
        if self.probation < -1:
            raise SaferlError(f"overseer_options probation must be a number of decisions >= 0, or -1 (until the "
                              f"next retraining), not {self.probation}")
        if self.hindsight < 0:
            raise SaferlError(f"overseer_options hindsight must be a number of decisions >= 0, not {self.hindsight}")
        if not 0 <= self.ask_blocks <= 1:
            raise SaferlError(f"overseer_options ask_blocks must be a share in [0, 1], not {self.ask_blocks}")
        for name in ("novelty_memory", "first_fit", "refit_every", "updates", "segment"):
            if getattr(self, name) < 1:
                raise SaferlError(f"overseer_options {name} must be at least 1, not {getattr(self, name)}")
