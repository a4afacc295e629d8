"""The oversight wrapper for one env: every proposed action is reviewed before the env runs it."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

from saferl.oversight.decision import ALLOW, Overseer, StepContext
from saferl.env.ground_truth import HOLD, GroundTruthWrapper
from saferl.oversight.intervention import Intervention, Mode
from saferl.oversight.metrics import SafetyCounters


class OversightWrapper(gym.Wrapper):
    """Reviews each proposed action with an overseer and blocks it according to ``mode``.

    ``info`` gains ``proposed_action``, ``executed_action``, ``blocked``, ``catastrophe``,
    ``false_negative``, ``false_positive``, ``score``, ``seconds``, ``labelled`` and ``penalty``. The agent's
    transition keeps its proposed action; a blocked step's reward carries the penalty.

    :param env: a :class:`GroundTruthWrapper` (with ``with_frame=True`` when labels are stored).
    :param overseer: who reviews (None: nobody; catastrophes are still counted).
    :param mode: ``replace`` | ``prune`` | ``penalty_only`` | ``observe``.
    :param penalty: added to the reward of a blocked step.
    :param label_store: a :class:`~saferl.labels.store.LabelStore` to append decisions to.
    :param first_episode: the id of the first episode (continue a store's numbering).
    """

    def __init__(
        self,
        env: GroundTruthWrapper,
        overseer: Overseer | None = None,
        mode: Mode | str = Mode.REPLACE,
        penalty: float = -1.0,
        label_store: Any | None = None,
        first_episode: int = 0,
    ) -> None:
        super().__init__(env)
        if not isinstance(env, GroundTruthWrapper):
            raise TypeError("OversightWrapper wraps a GroundTruthWrapper (see saferl.oversight.envs.make_overseen_env)")
        self.ground_truth = env
        self.overseer = overseer
        self.intervention = Intervention(
            mode, penalty, label_store, overseer_name=overseer.name if overseer else "none"
        )
        self.episode = first_episode - 1
        self._return = 0.0
        self._started = False

    @property
    def counters(self) -> SafetyCounters:
        """The running safety counters (see :class:`~saferl.oversight.metrics.SafetyCounters`)."""
        return self.intervention.counters

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if self._started:
            self.intervention.end_episode(0, self._return)
        self._started, self._return = True, 0.0
        self.episode += 1
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        proposed = int(action)
        truth = self.ground_truth
        context = StepContext(
            game=truth.game,
            state=truth.game_state,
            episode=self.episode,
            step=truth.episode_step,
            emulator=truth.emulator,
        )
        decision = self.overseer.review(context, proposed) if self.overseer is not None else ALLOW
        executed = self.intervention.executed_action(context, decision, proposed)
        counterfactual = truth.would_be_catastrophe(proposed) if executed != proposed else None
        obs, reward, terminated, truncated, info = self.env.step(executed)
        bonus, outcome = self.intervention.record(
            context, decision, proposed, executed, info["catastrophe"], counterfactual
        )
        reward = float(reward) + bonus
        self._return += reward
        info.update(outcome.as_info())
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        if self._started:
            self.intervention.end_episode(0, self._return)
            self._started = False
        super().close()


__all__ = ["HOLD", "OversightWrapper"]
