"""The bottom of every saferl env: the ALE stepped with frameskip and sticky actions we can replay exactly.

ALE's own sticky actions cannot be replayed: ``restoreState`` restores the RNG but not the action
that the last frame applied, which the next frame may repeat, so a real step taken after a
simulated one can differ from the simulation. :class:`Emulator` therefore runs the ALE at one
frame per ``act`` with sticky actions off and applies frameskip and sticky actions itself, with
the same semantics as ``ALE/<Game>-v5`` (each frame keeps the previously applied action with
probability ``repeat_action_probability``), keeping the applied action and the RNG in its
snapshots. Simulations on a snapshot then replay exactly.

An episode ends (``terminated``) at ALE's game over or where the game says it does
(:meth:`~saferl.games.Game.episode_over`): :func:`episode_ended` decides it for every env backend and
every simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from saferl.games import Game, GameState

STICKY_STREAM = 0x5A1E
"""Mixed into the reset seed so the sticky-action RNG is not ALE's own stream."""


def episode_ended(game: Game | None, ale: Any, state: GameState | None = None) -> bool:
    """Is the episode over (``terminated``)? ALE's game over (its frame limit aside), or ``game``'s own end.

    :param state: the current state, if already read (else it is read when the game needs it).
    """
    if ale.game_over(with_truncation=False):
        return True
    if game is None:
        return False
    return game.episode_over(state if state is not None else GameState.from_ale(ale))


@dataclass(frozen=True)
class Snapshot:
    """Everything that decides the emulator's future: ALE state, the applied action, the sticky RNG."""

    ale_state: Any
    applied: int
    rng_state: dict[str, Any]


class Emulator(gym.Wrapper):
    """Steps an ``ale_py`` AtariEnv (built with frameskip 1 and no sticky actions) the v5 way, replayably.

    Observations are RGB frames; ``info`` has ``lives`` and ``episode_frame_number``. An episode is
    ``terminated`` as :func:`episode_ended` says for ``game``.

    :param env: ``gym.make(env_id, frameskip=1, repeat_action_probability=0.0, ...)``.
    :param frameskip: ALE frames per agent step.
    :param repeat_action_probability: the per-frame chance of repeating the previous action.
    :param game: the game whose episodes this env plays (None: episodes end at ALE's game over only).
    """

    def __init__(
        self, env: gym.Env, frameskip: int = 4, repeat_action_probability: float = 0.25, game: Game | None = None
    ) -> None:
        super().__init__(env)
        atari = env.unwrapped
        made_with = env.spec.kwargs if env.spec is not None else {}
        if made_with.get("frameskip") != 1 or atari.ale.getFloat("repeat_action_probability") != 0.0:
            raise ValueError("Emulator wraps an AtariEnv made with gym.make(..., frameskip=1, "
                             "repeat_action_probability=0.0)")
        if not isinstance(frameskip, int) or frameskip < 1:
            raise ValueError(f"frameskip must be a positive int, not {frameskip!r}")
        self.ale = atari.ale
        self.frameskip = frameskip
        self.repeat_action_probability = float(repeat_action_probability)
        self.game = game
        full = made_with.get("full_action_space", False)
        self._action_set = list(atari.ale.getLegalActionSet() if full else atari.ale.getMinimalActionSet())
        self._applied = self._action_set[0]
        self._rng = np.random.default_rng()

    @property
    def num_actions(self) -> int:
        """The size of the env's action space."""
        return len(self._action_set)

    # --- stepping -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng([seed, STICKY_STREAM])
        self._applied = self._action_set[0]
        return obs, info

    def act(self, action: int) -> float:
        """One agent step of ``action`` (``frameskip`` frames, sticky), without building an observation."""
        wanted = self._action_set[action]
        reward = 0.0
        for _ in range(self.frameskip):
            if self._rng.random() >= self.repeat_action_probability:
                self._applied = wanted
            reward += self.ale.act(self._applied)
        return reward

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        reward = self.act(int(action))
        ale = self.ale
        info = {"lives": ale.lives(), "episode_frame_number": ale.getEpisodeFrameNumber()}
        return ale.getScreenRGB(), reward, self.terminated(), ale.game_truncated(), info

    def terminated(self, state: GameState | None = None) -> bool:
        """Is the episode over now? (:func:`episode_ended` for this env's game; ``state``: the current one, if read)"""
        return episode_ended(self.game, self.ale, state)

    # --- exact what-ifs -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Everything needed to come back here exactly."""
        return Snapshot(self.ale.cloneState(include_rng=True), self._applied, self._rng.bit_generator.state)

    def restore(self, snapshot: Snapshot) -> None:
        """Come back to ``snapshot``."""
        self.ale.restoreState(snapshot.ale_state)
        self._applied = snapshot.applied
        self._rng.bit_generator.state = snapshot.rng_state

    def state(self, with_frame: bool) -> GameState:
        """A snapshot of the game for the rules (RAM, lives, and the RGB screen if asked)."""
        return GameState.from_ale(self.ale, with_frame=with_frame)

    def first_catastrophe(
        self,
        game: Game,
        first_action: int,
        then: Callable[[GameState], int] | None = None,
        horizon: int = 1,
    ) -> int | None:
        """Simulate ``first_action``, then ``then(state)``, for ``horizon`` agent steps in all.

        Returns the step (0-based) of the first catastrophe, or None. The simulation stops where the
        episode ends (:func:`episode_ended` for ``game``, or ALE's frame limit). The emulator is restored
        exactly afterwards: the real next step is the one simulated.
        """
        snapshot = self.snapshot()
        try:
            before = self.state(game.needs_frame)
            action = first_action
            for step in range(horizon):
                self.act(action)
                after = self.state(game.needs_frame)
                if game.is_catastrophe(before, after):
                    return step
                if then is None or self.ale.game_truncated() or episode_ended(game, self.ale, after):
                    return None
                action, before = then(after), after
            return None
        finally:
            self.restore(snapshot)


def find_emulator(env: gym.Env) -> Emulator:
    """The :class:`Emulator` in ``env``'s wrapper chain (see :func:`saferl.env.ale.make_ale_env`)."""
    layer: Any = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, Emulator):
            return layer
        layer = layer.env
    raise TypeError("this env has no saferl Emulator: build it with saferl.env.ale.make_ale_env")
