"""What oversight does around one step of a batch of envs, whatever steps them: review the proposed actions in one
call, choose what each env executes, then count the outcomes, store the labels, ask hindsight questions and follow
each env's episode. One env is a batch of one: :class:`~saferl.oversight.wrapper.OversightWrapper` (a gymnasium
wrapper) and :class:`~saferl.oversight.vec_wrapper.VecOversight` (an SB3 VecEnv wrapper) only step their envs
around this class, so the two cannot drift apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from saferl.games import Game, GameState
from saferl.oversight.decision import ALLOW, Decision, Overseer, StepContext
from saferl.oversight.intervention import Hindsight, Intervention, Mode
from saferl.oversight.metrics import Outcome, SafetyCounters


class BatchOversight:
    """Oversight of ``n_envs`` envs of ``game``: call :meth:`start_episode` for each env, then per step
    :meth:`choose` before the envs step and :meth:`settle` after.

    Hindsight: an overseer with ``hindsight`` N > 0 and a ``review_hindsight(contexts, actions)`` method (the
    deferring overseer) is asked, after a catastrophe, about its last N decisions in that env's episode that were
    not labels (it decided them itself); its answers are stored and counted as labels of the catastrophe's step.

    :param overseer: who reviews (None: nobody; catastrophes are still counted).
    :param mode: ``replace`` | ``prune`` | ``penalty_only`` | ``observe``.
    :param penalty: added to the reward of a blocked step.
    :param label_store: a :class:`~saferl.labels.store.LabelStore` to append decisions to.
    :param first_episode: the id given to the first episode; later ones count up across envs.
    :param emulators: each env's emulator, for overseers that simulate (look-ahead); None when they run elsewhere.
    """

    def __init__(self, game: Game, n_envs: int, overseer: Overseer | None = None, mode: Mode | str = Mode.REPLACE,
                 penalty: float = -1.0, label_store: Any | None = None, first_episode: int = 0,
                 emulators: Sequence[Any] | None = None) -> None:
        self.game, self.n_envs = game, n_envs
        self.overseer = overseer
        self.intervention = Intervention(mode, penalty, label_store, overseer_name=overseer.name if overseer else "none")
        self.emulators = list(emulators) if emulators is not None else None
        self.contexts: list[StepContext | None] = [None] * n_envs
        self.returns = np.zeros(n_envs)
        self._next_episode = first_episode
        self._pending: list[tuple[Decision, int, int]] = []
        self._recent: list[deque[tuple[StepContext, int, int]]] = []  # (context, proposed, executed)
        self._keep_recent()

    @property
    def counters(self) -> SafetyCounters:
        """The running safety counters over all envs."""
        return self.intervention.counters

    def _keep_recent(self) -> None:
        """Make room for each env's last unlabelled decisions, as many as the overseer's ``hindsight``."""
        hindsight = self.overseer.hindsight if self.overseer is not None else 0
        self._recent = [deque(maxlen=hindsight) for _ in range(self.n_envs)]

    def set_overseer(self, overseer: Overseer | None, mode: Mode | str | None = None,
                     label_store: Any | None = None) -> None:
        """Hand oversight to ``overseer`` from the next step on; open episodes and the counters go on, ``mode``
        (None: keep) and ``label_store`` (None: store no more labels) apply to the new overseer's decisions."""
        counters = self.intervention.counters
        self.intervention = Intervention(mode or self.intervention.mode, self.intervention.penalty, label_store,
                                         overseer_name=overseer.name if overseer else "none")
        self.intervention.counters = counters
        self.overseer = overseer
        self._keep_recent()

    def start_episode(self, index: int, state: GameState) -> None:
        """Env ``index`` begins an episode in ``state`` (the game state its reset returned)."""
        self.contexts[index] = StepContext(game=self.game, state=state, episode=self._next_episode,
                                           emulator=self.emulators[index] if self.emulators else None, env_index=index)
        self.returns[index] = 0.0
        self._recent[index].clear()
        self._next_episode += 1

    def end_episode(self, index: int) -> None:
        """Close env ``index``'s open episode in the counters (a reset before it ended, or the last one)."""
        if self.contexts[index] is not None:
            self.intervention.end_episode(index, float(self.returns[index]))
            self.contexts[index] = None

    def choose(self, proposed: Sequence[int]) -> np.ndarray:
        """Review the proposed actions of every env in one call; return what each env executes (or HOLD)."""
        proposed = [int(action) for action in proposed]
        contexts = self.contexts
        if any(context is None for context in contexts):
            raise RuntimeError("an env steps outside an episode: reset it first")
        decisions = [ALLOW] * self.n_envs if self.overseer is None else self.overseer.review_batch(contexts, proposed)
        executed = [self.intervention.executed_action(c, d, a) for c, d, a in zip(contexts, decisions, proposed)]
        self._pending = list(zip(decisions, proposed, executed))
        return np.array(executed, np.int64)

    def settle(self, catastrophes: Sequence[bool], counterfactuals: dict[int, bool], rewards: np.ndarray,
               dones: Sequence[bool], states: Sequence[GameState]) -> list[Outcome]:
        """Count the step the envs took after :meth:`choose`: the outcome of each env (its info keys), its reward
        with the penalty added in place in ``rewards``. A done env's episode is closed: start its next one.

        :param counterfactuals: for each env whose proposed action was overridden, whether it would have held a
            catastrophe (exact).
        :param states: the game state after each env's step (the next decision's, unless it is done).
        """
        pending = self._pending
        if self._recent and self._recent[0].maxlen:
            for recent, context, (decision, proposed, executed) in zip(self._recent, self.contexts, pending):
                if not decision.label:
                    recent.append((context, proposed, executed))
        hindsight = {i: self._hindsight(i) for i in range(self.n_envs) if catastrophes[i]}
        outcomes = []
        for i, (decision, proposed, executed) in enumerate(pending):
            context = self.contexts[i]
            bonus, outcome = self.intervention.record(context, decision, proposed, executed, bool(catastrophes[i]),
                                                      counterfactuals.get(i), hindsight.get(i, ()))
            rewards[i] += bonus
            self.returns[i] += rewards[i]
            outcomes.append(outcome)
            if dones[i]:
                self.end_episode(i)
            else:
                self.contexts[i] = replace(context, state=states[i], step=context.step + int(executed >= 0))
        for asked in hindsight.values():
            self.intervention.store_hindsight(asked)
        self._pending = []
        return outcomes

    def _hindsight(self, index: int) -> list[Hindsight]:
        """The overseer's answers about env ``index``'s last unlabelled decisions, this step's included (after a
        catastrophe there; none when the overseer keeps no hindsight)."""
        recent = self._recent[index]
        if not recent:
            return []
        contexts, proposed, executed = zip(*recent)
        answers = self.overseer.review_hindsight(list(contexts), list(proposed))
        recent.clear()
        return list(zip(contexts, answers, proposed, executed))


__all__ = ["BatchOversight"]
