"""How a decision changes a step, shared by the single-env wrapper and its vectorized twin.

Modes (PAPER.md): ``replace`` executes a safe action and adds the penalty; ``prune`` does not
step the env and returns the same observation with the penalty, so the agent picks again;
``penalty_only`` adds the penalty but executes the proposed action (the reward-shaping baseline);
``observe`` changes nothing and only records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

from saferl.env.ground_truth import HOLD
from saferl.errors import SaferlError
from saferl.games import GameState
from saferl.oversight.decision import Decision, StepContext
from saferl.oversight.metrics import Outcome, SafetyCounters


class Mode(str, Enum):
    """What a block does to the step."""

    REPLACE = "replace"
    PRUNE = "prune"
    PENALTY_ONLY = "penalty_only"
    OBSERVE = "observe"

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        """The mode named ``value``; a clear error lists the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(mode.value for mode in cls)
            raise SaferlError(f"unknown oversight mode {value!r} (--mode): choose one of {choices}") from None

    @property
    def enforces(self) -> bool:
        """Whether a blocked action is kept from the env."""
        return self in (Mode.REPLACE, Mode.PRUNE)


Hindsight = tuple[StepContext, Decision, int, int]
"""An earlier step asked about after a catastrophe: its context, the person's answer, the proposed and the
executed action."""


class Intervention:
    """Applies decisions under one mode: picks the executed action, the penalty, the counts, the labels.

    :param mode: see the module docstring.
    :param penalty: added to the reward of a blocked step (the paper used -1 in Pong).
    :param label_store: where to append each decision (None: keep none).
    :param overseer_name: recorded with every label.
    :param max_prunes: consecutive prunes of one env before a safe action is executed instead, so a
        deterministic agent cannot stall the env forever.
    """

    def __init__(
        self,
        mode: Mode | str = Mode.REPLACE,
        penalty: float = -1.0,
        label_store: Any | None = None,
        overseer_name: str = "overseer",
        max_prunes: int = 100,
    ) -> None:
        self.mode = Mode.parse(mode)
        if not math.isfinite(penalty):
            raise SaferlError(f"--penalty must be a finite number, not {penalty}")
        self.penalty = float(penalty)
        self.label_store = label_store
        self.overseer_name = overseer_name
        self.max_prunes = max_prunes
        self.counters = SafetyCounters()
        self._prunes: dict[int, int] = {}

    def executed_action(self, context: StepContext, decision: Decision, proposed: int) -> int:
        """The action the env will run (or HOLD) for ``proposed`` under ``decision``."""
        if not (decision.block and self.mode.enforces):
            self._prunes.pop(context.env_index, None)
            return proposed
        if self.mode is Mode.PRUNE:
            pruned = self._prunes.get(context.env_index, 0)
            if pruned < self.max_prunes:
                self._prunes[context.env_index] = pruned + 1
                return HOLD
        self._prunes.pop(context.env_index, None)
        return replacement_action(context, decision, proposed)

    def record(
        self,
        context: StepContext,
        decision: Decision,
        proposed: int,
        executed: int,
        catastrophe: bool,
        proposed_was_catastrophe: bool | None,
        hindsight: Sequence[Hindsight] = (),
    ) -> tuple[float, Outcome]:
        """Count the step, store its label; return the reward to add and the step's outcome.

        :param proposed_was_catastrophe: for an enforced block, whether the proposed action would
            have held a catastrophe (an exact counterfactual); otherwise unused.
        :param hindsight: earlier steps of this env and a person's answers about them, asked after this step's
            catastrophe: counted with this step's human labour (:meth:`store_hindsight` stores them).
        """
        if decision.block and self.mode.enforces:
            needed = bool(proposed_was_catastrophe)
        else:
            needed = catastrophe
        bonus = self.penalty if decision.block and self.mode is not Mode.OBSERVE else 0.0
        outcome = Outcome(
            proposed_action=proposed,
            executed_action=executed,
            blocked=decision.block,
            catastrophe=catastrophe,
            catastrophe_on_block=catastrophe and executed not in (proposed, HOLD),
            false_negative=catastrophe and not decision.block,
            false_positive=decision.block and not needed,
            score=float(decision.score),
            seconds=float(decision.seconds),
            labelled=self.label_store is not None and decision.label,
            penalty=bonus,
            hindsight_labels=len(hindsight) if self.label_store is not None else 0,
            hindsight_seconds=sum(float(answer.seconds) for _, answer, _, _ in hindsight),
        )
        if outcome.labelled:
            self._store_label(context, proposed, executed, decision, catastrophe)
        self.counters.record(context.env_index, outcome)
        return bonus, outcome

    def store_hindsight(self, hindsight: Sequence[Hindsight]) -> None:
        """Store the answers about earlier steps (when a store is kept), after the labels of the step they were
        asked in: the store then holds the asked decisions in the order they were asked."""
        if self.label_store is not None:
            for context, answer, proposed, executed in hindsight:
                self._store_label(context, proposed, executed, answer, False)

    def end_episode(self, env_index: int, episode_return: float) -> None:
        """Close the episode of env ``env_index`` in the counters."""
        self.counters.end_episode(env_index, episode_return)

    def _store_label(self, context: StepContext, proposed: int, executed: int, decision: Decision,
                     catastrophe: bool) -> None:
        from saferl.labels.store import Label

        frame = context.state.frame
        if frame is None:
            raise RuntimeError("labels need frames: build the env's GroundTruthWrapper with with_frame=True")
        self.label_store.append(
            Label(
                frame=frame,
                proposed_action=proposed,
                executed_action=executed,
                blocked=decision.block,
                catastrophe=catastrophe,
                episode=context.episode,
                step=context.step,
                overseer=self.overseer_name,
                seconds=float(decision.seconds),
                score=float(decision.score),
            )
        )


def replacement_action(context: StepContext, decision: Decision, proposed: int) -> int:
    """The safe action to execute for a blocked ``proposed``: the overseer's, else the game's, never ``proposed``."""
    state: GameState = context.state
    candidates = [decision.safe_action, context.game.safe_action(state, proposed), 0, 1, 2]
    return next(int(a) for a in candidates if a is not None and a != proposed)
