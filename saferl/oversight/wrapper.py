"""The oversight wrapper for one env: every proposed action is reviewed before the env runs it (the logic is
:class:`~saferl.oversight.batch.BatchOversight`'s, over a batch of one)."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from saferl.env.ground_truth import HOLD, GroundTruthWrapper
from saferl.oversight.batch import BatchOversight
from saferl.oversight.decision import Overseer
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

    An overseer's hindsight works here as in :class:`~saferl.oversight.vec_wrapper.VecOversight`.
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
        self.oversight = BatchOversight(env.game, 1, overseer, mode, penalty, label_store, first_episode,
                                        emulators=[env.emulator])

    @property
    def overseer(self) -> Overseer | None:
        return self.oversight.overseer

    @property
    def intervention(self) -> Intervention:
        return self.oversight.intervention

    @property
    def counters(self) -> SafetyCounters:
        """The running safety counters (see :class:`~saferl.oversight.metrics.SafetyCounters`)."""
        return self.oversight.counters

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.oversight.end_episode(0)
        obs, info = self.env.reset(**kwargs)
        self.oversight.start_episode(0, info["game_state"])
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        proposed = int(action)
        executed = int(self.oversight.choose([proposed])[0])
        counterfactuals = {0: self.ground_truth.would_be_catastrophe(proposed)} if executed != proposed else {}
        obs, reward, terminated, truncated, info = self.env.step(executed)
        rewards = np.array([reward], np.float64)
        outcome, = self.oversight.settle([info["catastrophe"]], counterfactuals, rewards, [terminated or truncated],
                                         [info["game_state"]])
        info.update(outcome.as_info())
        return obs, float(rewards[0]), terminated, truncated, info

    def close(self) -> None:
        self.oversight.end_episode(0)
        super().close()


__all__ = ["HOLD", "OversightWrapper"]
