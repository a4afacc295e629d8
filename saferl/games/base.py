"""What a game is to saferl: an ALE env, its ground-truth catastrophe and the paper's blocking rule.

A :class:`Game` is pure description and pure functions of :class:`GameState` snapshots, so the
same definitions serve the live wrapper, counterfactual look-ups (ALE clone/restore), the label
store and the UI without hidden state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GameState:
    """A snapshot of the emulator between two agent steps.

    :param ram: the 128 bytes of Atari RAM (uint8).
    :param lives: ``ale.lives()``.
    :param frame: the RGB screen (210x160x3 uint8), present when the game's rules read pixels.
    """

    ram: np.ndarray
    lives: int
    frame: np.ndarray | None = None

    @classmethod
    def from_ale(cls, ale: Any, with_frame: bool = False) -> GameState:
        """Read a snapshot from an ``ale_py.ALEInterface`` (copies, so later steps do not change it)."""
        return cls(
            ram=np.array(ale.getRAM(), dtype=np.uint8),
            lives=int(ale.lives()),
            frame=np.array(ale.getScreenRGB(), dtype=np.uint8) if with_frame else None,
        )


@dataclass(frozen=True)
class Rect:
    """A rectangle in frame pixels, rows [top, bottom) and columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int
    label: str = ""


@dataclass(frozen=True)
class PlayerSprite:
    """Where the player is drawn: pixels of ``color`` in rows [top, bottom) of the RGB frame. Their mean column
    is the player's column, and with ``vertical`` (a player that moves up and down too) their mean row its row (a
    Blocker can centre its input on it: :class:`~saferl.blocker.data.Preprocessing`)."""

    top: int
    bottom: int
    color: tuple[int, int, int]
    vertical: bool = False

    def _pixels(self, frame: np.ndarray) -> np.ndarray:
        """Which pixels of rows [top, bottom) have the player's colour (rows x W bool)."""
        return np.all(frame[self.top:self.bottom] == np.asarray(self.color, np.uint8), axis=2)

    def column(self, frame: np.ndarray) -> int | None:
        """The player's column in ``frame`` (H x W x 3 uint8), or None when no pixel of its colour shows."""
        columns = np.flatnonzero(self._pixels(frame).any(axis=0))
        return int(round(columns.mean())) if len(columns) else None

    def row(self, frame: np.ndarray) -> int | None:
        """The player's row in ``frame``, or None when no pixel of its colour shows."""
        rows = np.flatnonzero(self._pixels(frame).any(axis=1))
        return self.top + int(round(rows.mean())) if len(rows) else None


@dataclass(frozen=True)
class Game:
    """Base class of a game; subclasses override the rule methods.

    :param name: the registry name (``pong``).
    :param env_id: the gymnasium id of the ALE env.
    :param catastrophe_text: the ground-truth catastrophe in words, and whether RAM or pixels decide it.
    :param blocking_rule_text: what the paper's (simulated) human blocks.
    :param needs_frame: True when :meth:`is_catastrophe` or :meth:`should_block` read ``state.frame``.
    :param lookahead_horizon: agent steps the look-ahead overseer simulates (long enough to see a
        catastrophe coming while a safe action can still avoid it).
    :param env_kwargs: keyword arguments for ``gymnasium.make`` (frameskip, sticky actions, ...).
    :param episode_ends_text: when an episode ends, in words (see :meth:`episode_over`).
    :param random_return: a random policy's game return per episode, the zero of ``return_vs_none`` in reports
        (None: not stated; the report then leaves that ratio out).
    :param player_sprite: where the player is drawn (None: not stated), for Blockers that see their input
        centred on the player.
    """

    name: str
    env_id: str
    catastrophe_text: str
    blocking_rule_text: str
    needs_frame: bool = False
    lookahead_horizon: int = 3
    env_kwargs: Mapping[str, Any] = field(
        default_factory=lambda: {"frameskip": 4, "repeat_action_probability": 0.25, "full_action_space": False}
    )
    episode_ends_text: str = "terminated at ALE's game over; truncated at ALE's frame limit (108,000 frames unless set)"
    random_return: float | None = None
    player_sprite: PlayerSprite | None = None

    # --- the rules; each game overrides them -------------------------------------------------
    def is_catastrophe(self, before: GameState, after: GameState) -> bool:
        """Ground truth: did the agent step that led from ``before`` to ``after`` hold a catastrophe?"""
        raise NotImplementedError

    def should_block(self, state: GameState, action: int) -> bool:
        """The paper's blocking rule: would the (simulated) human block ``action`` in ``state``?"""
        raise NotImplementedError

    def safe_action(self, state: GameState, action: int) -> int:
        """The action to execute instead of a blocked ``action`` (the game's safe-action map)."""
        raise NotImplementedError

    def danger_zones(self, state: GameState | None = None) -> list[Rect]:
        """Regions of the frame to draw as dangerous in the oversight window."""
        return []

    def episode_over(self, state: GameState) -> bool:
        """Does the episode end (``terminated``) at ``state`` although ALE's game goes on?

        Read from RAM and lives only (``state.frame`` may be None). Every env backend and every simulation
        ends episodes through :func:`saferl.env.emulator.episode_ended`, which asks this after ALE's game over.
        """
        return False

    def describe(self) -> dict[str, Any]:
        """The game's definitions as plain data (for ``saferl games``)."""
        return {
            "name": self.name,
            "env_id": self.env_id,
            "catastrophe": self.catastrophe_text,
            "blocking_rule": self.blocking_rule_text,
            "episode_ends": self.episode_ends_text,
            "reads_pixels": self.needs_frame,
            "env_kwargs": dict(self.env_kwargs),
            "danger_zones": [vars(zone) for zone in self.danger_zones()],
        }
