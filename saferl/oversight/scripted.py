"""The scripted overseer: the paper's blocking rule standing in for the human."""

from __future__ import annotations

import numpy as np

from saferl.errors import SaferlError
from saferl.oversight.decision import BaseOverseer, Decision, StepContext


class ScriptedOverseer(BaseOverseer):
    """Blocks what the game's rule blocks, optionally with seeded label noise.

    :param false_positive_rate: chance of blocking an action the rule allows.
    :param false_negative_rate: chance of allowing an action the rule blocks.
    :param seconds_per_decision: simulated human time per decision, for labour accounting.
    :param seed: seeds the noise.
    """

    name = "scripted"

    def __init__(
        self,
        false_positive_rate: float = 0.0,
        false_negative_rate: float = 0.0,
        seconds_per_decision: float = 0.0,
        seed: int | None = None,
    ) -> None:
        for arg, rate in (("false_positive_rate", false_positive_rate), ("false_negative_rate", false_negative_rate)):
            if not 0.0 <= rate <= 1.0:
                raise SaferlError(f"{arg} must lie in [0, 1], not {rate}")
        if seconds_per_decision < 0:
            raise SaferlError(f"seconds_per_decision must be >= 0, not {seconds_per_decision}")
        self.false_positive_rate = false_positive_rate
        self.false_negative_rate = false_negative_rate
        self.seconds_per_decision = seconds_per_decision
        self._rng = np.random.default_rng(seed)

    def review(self, context: StepContext, action: int) -> Decision:
        block = context.game.should_block(context.state, action)
        flip = self.false_negative_rate if block else self.false_positive_rate
        if flip and self._rng.random() < flip:
            block = not block
        return Decision(
            block=block,
            safe_action=context.game.safe_action(context.state, action) if block else None,
            score=float(block),
            seconds=self.seconds_per_decision,
        )
