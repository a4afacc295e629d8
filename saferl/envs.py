"""Building envs: the raw ALE env of a game, and the agent's preprocessing on top of it."""

from __future__ import annotations

from typing import Any

import ale_py
import gymnasium as gym

from saferl.games import Game

gym.register_envs(ale_py)


def make_ale_env(game: Game, seed: int | None = None, **overrides: Any) -> gym.Env:
    """The game's ALE env with its settings (frameskip 4, sticky actions 0.25, minimal actions).

    Observations are RGB frames (210x160x3). ``overrides`` replace the game's ``env_kwargs``
    (for example ``repeat_action_probability=0.0``).
    """
    kwargs = {**game.env_kwargs, **overrides}
    env = gym.make(game.env_id, **kwargs)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def action_names(env: gym.Env) -> list[str]:
    """The meanings of the env's actions, as ALE names them (``NOOP``, ``FIRE``, ...)."""
    return list(env.unwrapped.get_action_meanings())
