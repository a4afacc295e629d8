"""The bottom wrapper of every overseen env: ground-truth catastrophes, computed where the env runs."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

from saferl.env.emulator import find_emulator
from saferl.games import Game, GameState

HOLD = -1
"""The action that leaves the env where it is (action pruning): the last observation comes back."""


class GroundTruthWrapper(gym.Wrapper):
    """Adds the game's ground truth to every step, and exact counterfactuals for overseers.

    ``info["catastrophe"]`` says whether the executed step held a catastrophe;
    ``info["game_state"]`` is the snapshot after it, which the next decision is taken in (with the
    RGB frame when ``with_frame``). Stepping :data:`HOLD` does not touch the emulator.

    :param env: an ALE env (see :func:`saferl.env.ale.make_ale_env`).
    :param game: the game's definitions.
    :param with_frame: also snapshot RGB frames (for labels, Blockers, pixel rules).
    """

    def __init__(self, env: gym.Env, game: Game, with_frame: bool = False) -> None:
        super().__init__(env)
        self.game = game
        self.with_frame = with_frame or game.needs_frame
        self.emulator = find_emulator(env)
        self.game_state: GameState = self.emulator.state(self.with_frame)
        self.episode_step = 0
        self._last: tuple[Any, dict[str, Any]] | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.game_state = self.emulator.state(self.with_frame)
        self.episode_step = 0
        self._last = (obs, info)
        return obs, {**info, "game_state": self.game_state, "catastrophe": False}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        action = int(action)
        if action == HOLD:
            if self._last is None:
                raise RuntimeError("reset() the env before stepping it")
            obs, info = self._last
            return obs, 0.0, False, False, {**info, "game_state": self.game_state, "catastrophe": False}
        obs, reward, terminated, truncated, info = self.env.step(action)
        before, self.game_state = self.game_state, self.emulator.state(self.with_frame)
        self.episode_step += 1
        self._last = (obs, info)
        catastrophe = self.game.is_catastrophe(before, self.game_state)
        return obs, reward, terminated, truncated, {**info, "game_state": self.game_state, "catastrophe": catastrophe}

    def would_be_catastrophe(self, action: int) -> bool:
        """Would executing ``action`` now hold a catastrophe? (exact; the env is left as it was)"""
        return self.emulator.first_catastrophe(self.game, int(action)) is not None
