"""The adversary: an SB3 PPO agent rewarded for catastrophes the Blocker lets through.

The paper's Road Runner agent found, by chance, a way to die that its Blocker had never seen: a
"nearest unblocked strategy". This searches for one on purpose: the agent plays under the Blocker
(``replace`` mode, see :mod:`saferl.attack.rollout`) and its only reward is 1 for each step whose
catastrophe the Blocker did not block (the game's score is ignored). Every false negative met while
it learns counts as found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper, VecFrameStack
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from saferl.attack.rollout import MethodResult, overseen_envs, train_ppo
from saferl.games import Game


class FalseNegativeReward(VecEnvWrapper):
    """Replaces each step's reward by 1 when it held a catastrophe the overseer let through, else 0."""

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, _, dones, infos = self.venv.step_wait()
        rewards = np.array([float(info.get("false_negative", False)) for info in infos], np.float32)
        return obs, rewards, dones, infos


def adversary(scorer: Any, game: Game, steps: int, seed: int = 0, n_envs: int = 8,
              max_findings: int = 20, progress: bool = False) -> MethodResult:
    """Train the adversary for ``steps`` agent steps against the Blocker ``scorer``; what it found on the way."""
    recorder = overseen_envs(scorer, game, f"PPO adversary, seed {seed}", n_envs, seed, max_findings, steps=steps,
                             progress=progress)
    try:
        train_ppo(FalseNegativeReward(VecFrameStack(recorder, 4)), game, seed, steps)
        return recorder.result("adversary")
    finally:
        recorder.close()
