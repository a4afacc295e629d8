"""What the agent sees: the ALE screen in gray, resized to 84x84 (as gymnasium's ``AtariPreprocessing`` with
``frame_skip=1, noop_max=0`` makes it, from ALE's public screen calls), the same in every env backend."""

from __future__ import annotations

from typing import Any, SupportsFloat

import cv2
import gymnasium as gym
import numpy as np

from saferl.env.ground_truth import HOLD

AGENT_SCREEN = (84, 84)


def agent_screen(ale: Any, gray: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write ``ale``'s screen, gray and resized to :data:`AGENT_SCREEN`, into ``out`` (84 x 84); ``gray`` is a
    210 x 160 buffer for the full-size screen."""
    ale.getScreenGrayscale(gray)
    out[...] = cv2.resize(gray, AGENT_SCREEN[::-1], interpolation=cv2.INTER_AREA)
    return out


class AgentView(gym.Wrapper):
    """The agent's observation (:func:`agent_screen`) read after every step, the last one again for a held step.

    A held step (:data:`HOLD`, or ``info["executed_action"]`` HOLD) does not touch the emulator, and after a
    counterfactual or a look-ahead the screen shows a simulated frame, so the last observation comes back. The
    screen is read on the step that ends an episode too (SB3's ``terminal_observation``, which a truncated
    episode's value is bootstrapped from, is the last frame).

    :param env: an env with a saferl :class:`~saferl.env.emulator.Emulator` below (its ``ale``).
    :param channel_axis: observations ``84 x 84 x 1`` (SB3's image convention) instead of ``84 x 84``.
    """

    def __init__(self, env: gym.Env, channel_axis: bool = False) -> None:
        super().__init__(env)
        self._ale = env.get_wrapper_attr("ale")
        self._gray = np.empty((210, 160), np.uint8)
        self._shape = (*AGENT_SCREEN, 1) if channel_axis else AGENT_SCREEN
        self.observation_space = gym.spaces.Box(0, 255, self._shape, np.uint8)
        self._last = np.zeros(self._shape, np.uint8)

    def _read(self) -> np.ndarray:
        screen = np.empty(AGENT_SCREEN, np.uint8)
        agent_screen(self._ale, self._gray, screen)
        return screen.reshape(self._shape)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        _, info = self.env.reset(**kwargs)
        self._last = self._read()
        return self._last, info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(action)
        if int(action) != HOLD and info.get("executed_action") != HOLD:
            self._last = self._read()
        return self._last, reward, terminated, truncated, info
