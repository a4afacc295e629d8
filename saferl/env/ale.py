"""A game's ALE env: registered with gymnasium, quiet on stderr, stepped by saferl's :class:`Emulator`."""

from __future__ import annotations

from typing import Any

import ale_py
import gymnasium as gym

from saferl.env.emulator import Emulator
from saferl.games import Game

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr: saferl's own messages only


def make_ale_env(game: Game, seed: int | None = None, **overrides: Any) -> Emulator:
    """The game's ALE env with its settings (frameskip 4, sticky actions 0.25, minimal actions).

    Observations are RGB frames (210x160x3). ``overrides`` replace the game's ``env_kwargs``
    (for example ``repeat_action_probability=0.0``). Frameskip and sticky actions are applied by
    :class:`~saferl.env.emulator.Emulator`, so that look-ahead can replay them exactly; episodes end where
    the game says (:meth:`~saferl.games.Game.episode_over`) as well as at ALE's game over.
    """
    kwargs = {**game.env_kwargs, **overrides}
    frameskip = kwargs.pop("frameskip", 4)
    sticky = kwargs.pop("repeat_action_probability", 0.25)
    atari = gym.make(game.env_id, frameskip=1, repeat_action_probability=0.0, obs_type="rgb", **kwargs)
    env = Emulator(atari, frameskip=frameskip, repeat_action_probability=sticky, game=game)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def action_names(env: gym.Env) -> list[str]:
    """The meanings of the env's actions, as ALE names them (``NOOP``, ``FIRE``, ...)."""
    return list(env.unwrapped.get_action_meanings())


def game_action_names(game: Game) -> list[str]:
    """The meanings of ``game``'s actions, read from a probe env that is closed at once."""
    probe = make_ale_env(game)
    try:
        return action_names(probe)
    finally:
        probe.close()
