"""Decisions and the Overseer protocol: what every overseer (scripted, lookahead, Blocker, human) speaks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from saferl.env.emulator import Emulator
from saferl.errors import SaferlError
from saferl.games import Game, GameState


@dataclass(frozen=True)
class Decision:
    """An overseer's verdict on one proposed action.

    :param block: stop the proposed action.
    :param safe_action: what to execute instead when blocking (None: the game's safe action).
    :param score: the overseer's block score in [0, 1] (NaN when it has none).
    :param seconds: the time the overseer spent on this decision (human labour).
    :param label: whether the decision is a label worth storing (an overseer that decides itself most of
        the time and asks a person only when unsure marks only the person's answers).
    """

    block: bool
    safe_action: int | None = None
    score: float = math.nan
    seconds: float = 0.0
    label: bool = True


ALLOW = Decision(block=False)


def preferred_actions(prefer: int | Sequence[int] | None) -> tuple[int, ...]:
    """An overseer's ``prefer`` option: the actions it tries first as a blocked action's replacement (an action id
    or a list of them), checked."""
    actions = [prefer] if isinstance(prefer, int) else list(prefer or ())
    if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in actions):
        raise SaferlError(f"prefer must be an action id or a list of them (e.g. prefer=0 or prefer=[0, 2]), "
                          f"not {prefer!r}")
    return tuple(actions)


def check_preferred(prefer: tuple[int, ...], n_actions: int) -> None:
    """Refuse a ``prefer`` action the game does not have (it has ``n_actions``)."""
    if prefer and max(prefer) >= n_actions:
        raise SaferlError(f"prefer names action {max(prefer)}, but the game has {n_actions} actions (0 to "
                          f"{n_actions - 1}; saferl games lists them)")


@dataclass(frozen=True)
class StepContext:
    """What an overseer may look at before the proposed action is executed.

    :param game: the game's definitions.
    :param state: the emulator snapshot the action would be taken in (``state.frame`` is the RGB
        screen when the overseer or the label store asked for frames).
    :param episode: the episode id (unique within a run and its label store).
    :param step: the agent step within the episode.
    :param emulator: the live emulator for look-ahead overseers (in-process envs only).
    :param env_index: which env of a vectorized batch this is.
    """

    game: Game
    state: GameState
    episode: int = 0
    step: int = 0
    emulator: Emulator | None = field(default=None, repr=False)
    env_index: int = 0


@runtime_checkable
class Overseer(Protocol):
    """Reviews proposed actions. ``requires`` names what contexts must carry: ``frame``, ``emulator``.

    ``hindsight`` (N >= 0): after a catastrophe, the oversight asks :meth:`review_hindsight` about the env's last N
    decisions that were not labels. :class:`BaseOverseer` gives every hook a default that does nothing.
    """

    name: str
    requires: frozenset[str]
    hindsight: int
    label_store: Any

    def review(self, context: StepContext, action: int) -> Decision:
        """Decide on one proposed action."""
        ...

    def review_batch(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        """Decide on a batch of proposed actions (one per vectorized env)."""
        ...

    def review_hindsight(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        """Answer, after a catastrophe, about earlier decisions this overseer took itself."""
        ...

    def prefetch(self, contexts: Sequence[StepContext]) -> None:
        """Start on the contexts reviewed next, while the agent chooses its actions."""
        ...

    def frame_scorer(self) -> Callable[[list[np.ndarray]], Any] | None:
        """What the review computes from the RGB frames alone, before any action is proposed, as a picklable
        function of a batch of frames that may run where the envs run (None: nothing)."""
        ...

    def use_scores(self, contexts: Sequence[StepContext], scores: Any) -> None:
        """The answer of :meth:`frame_scorer`'s function on these contexts' frames, computed elsewhere: the next
        review of the same contexts decides from it."""
        ...

    def stats(self) -> dict[str, Any]:
        """What the overseer tells of its work (reported with the run)."""
        ...

    def close(self) -> None:
        """Release what the overseer holds (threads, windows)."""
        ...


class BaseOverseer:
    """Convenience base: ``review_batch`` loops over ``review`` (batched overseers override it), and the optional
    hooks do nothing: no hindsight, no prefetch, no frame scorer, no stats, nothing to close."""

    name: str = "overseer"
    requires: frozenset[str] = frozenset()
    hindsight: int = 0
    label_store: Any = None  # where its decisions are stored, for overseers that read them back (undo, resume)

    def review(self, context: StepContext, action: int) -> Decision:
        raise NotImplementedError

    def review_batch(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        return [self.review(context, int(action)) for context, action in zip(contexts, actions)]

    def review_hindsight(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        return []

    def prefetch(self, contexts: Sequence[StepContext]) -> None:
        return None

    def frame_scorer(self) -> Callable[[list[np.ndarray]], Any] | None:
        return None

    def use_scores(self, contexts: Sequence[StepContext], scores: Any) -> None:
        raise NotImplementedError(f"the {self.name} overseer has no frame scorer")

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None
