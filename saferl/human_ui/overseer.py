"""The human overseer: a person blocks the agent's proposed actions in a pygame window, synchronously.

Each proposed action is shown for the pace (500 ms by default, the paper's); a key decides at once,
and no key within the pace allows it. The seconds from showing the frame to the decision go into
``Decision.seconds`` (human labour, stored with the label; time spent paused on a frame counts).

Undo (backspace) takes back the person's latest block that is not yet undone. A block of an env
whose batch is still being reviewed is retracted before anything is stored or executed; an older
one was already executed (the env ran the replacement), so its label is relabelled ``allow`` in the
label store (a relabel overlay, reviewer ``human-undo``; the original record stays). Relabelling
needs the label store the wrapper appends to (``label_store``); without one only retractions work.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from saferl.errors import SaferlError
from saferl.human_ui.keys import LIVE_KEYS, LIVE_LEGEND, Command, OversightQuit, command_of
from saferl.human_ui.window import ALLOW, BLOCK, DEFAULT_SCALE, DIM, NOTE, TEXT, Line, Window
from saferl.oversight.decision import BaseOverseer, Decision, StepContext
from saferl.oversight.intervention import replacement_action

DEFAULT_PACE_MS = 500
PACES_MS = (50, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000)
MAX_PACE_MS = 60_000
TICK_MS = 40  # how often the countdown bar moves
HISTORY = 6
MESSAGE_DECISIONS = 4  # a message stays on screen for this many decisions


def check_pace(pace: int) -> int:
    """``pace`` (ms per frame) when it is usable; else a SaferlError naming ``--pace``."""
    if isinstance(pace, bool) or not isinstance(pace, int) or not 1 <= pace <= MAX_PACE_MS:
        raise SaferlError(f"--pace must be a whole number of milliseconds per frame from 1 to {MAX_PACE_MS:,}, "
                          f"not {pace!r}")
    return pace


def load_advisor(folder: str | os.PathLike[str], game: str | None) -> Any:
    """The Blocker (or ensemble) saved in ``folder``, for ``game``; errors name ``--blocker``."""
    from saferl.blocker.ensemble import load_scorer

    try:
        return load_scorer(folder, game)
    except SaferlError as err:
        raise SaferlError(f"--blocker {folder}: {err}") from None


def faster(pace_ms: int) -> int:
    """The next shorter pace of :data:`PACES_MS` (the same when none is shorter)."""
    return max((p for p in PACES_MS if p < pace_ms), default=pace_ms)


def slower(pace_ms: int) -> int:
    """The next longer pace of :data:`PACES_MS` (the same when none is longer)."""
    return min((p for p in PACES_MS if p > pace_ms), default=pace_ms)


@dataclass
class _Block:
    """A block the person gave, for undo: the batch it was given in, its place there, the env's episode and step."""

    batch: int
    position: int
    episode: int
    step: int


class HumanOverseer(BaseOverseer):
    """A person reviewing each proposed action in a pygame window (keys: :mod:`saferl.human_ui.keys`).

    :param pace: milliseconds each frame waits for a key before the action is allowed.
    :param scale: the zoom of the frame.
    :param blocker: a trained Blocker (or ensemble) whose score the window shows as advice.
    :param label_store: the store the oversight wrapper appends these decisions to (for undo).
    """

    name = "human"
    requires = frozenset({"frame"})

    def __init__(self, pace: int = DEFAULT_PACE_MS, scale: int = DEFAULT_SCALE, blocker: Any | None = None,
                 label_store: Any | None = None) -> None:
        self.pace_ms = check_pace(pace)
        self.window = Window(scale=scale, title="saferl: human oversight")
        self.label_store = label_store
        self.advisor = None
        self.threshold = math.nan
        if blocker is not None:
            from saferl.blocker import BlockerOverseer

            self.advisor = BlockerOverseer(blocker)
            self.threshold = float(blocker.threshold)
        self.paused = False
        self.decisions = 0
        self.blocks = 0
        self.undone = 0
        self.message: Line = ("", TEXT)
        self._message_until = 0
        self._batch = 0
        self._given: list[_Block] = []
        self._history: dict[int, deque[str]] = {}

    # ----- the Overseer protocol -----

    def review(self, context: StepContext, action: int) -> Decision:
        return self.review_batch([context], [action])[0]

    def review_batch(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        """Show the envs' frames one after another and wait for the person's decision on each."""
        self._batch += 1
        advice = self.advisor.review_batch(contexts, actions) if self.advisor is not None and contexts else None
        decisions: list[Decision] = []
        for k, (context, action) in enumerate(zip(contexts, actions)):
            hint = advice[k] if advice is not None else None
            decision = self._decide(context, int(action), hint, k, len(contexts), decisions)
            decisions.append(decision)
            if decision.block:
                self.blocks += 1
                self._given.append(_Block(self._batch, k, context.episode, context.step))
        self.decisions += len(decisions)
        for context, action, decision in zip(contexts, actions, decisions):
            self._remember(context, int(action), decision)
        return decisions

    def close(self) -> None:
        """Close the window."""
        self.window.close()

    # ----- one decision -----

    def _decide(self, context: StepContext, action: int, hint: Decision | None, position: int, count: int,
                decisions: list[Decision]) -> Decision:
        """Wait for the person's decision on ``action`` (earlier ``decisions`` of the batch may be retracted)."""
        frame = context.state.frame
        if frame is None:
            raise RuntimeError("the human overseer needs frames: build the env with with_frame=True "
                               "(make_overseen_env and make_vec_env do when the overseer requires 'frame')")
        n_actions = len(_action_names(context))
        choice: int | None = None  # None: the game's safe action

        def draw() -> None:
            status = self._status(context, action, choice, hint, position, count)
            self.window.draw(frame, context.game.danger_zones(context.state), status, LIVE_LEGEND, progress())

        def progress() -> float | None:
            return None if self.paused else (deadline - time.perf_counter()) / (self.pace_ms / 1000)

        deadline = time.perf_counter() + self.pace_ms / 1000
        draw()
        shown = time.perf_counter()  # the countdown starts once the frame is on screen
        deadline = shown + self.pace_ms / 1000
        while True:
            left_ms = (deadline - time.perf_counter()) * 1000
            event = self.window.wait_event(None if self.paused else min(left_ms, TICK_MS))
            if event is None:  # keys pressed in time were all handled: the pace decides
                if not self.paused and time.perf_counter() >= deadline:
                    return Decision(block=False, score=0.0, seconds=time.perf_counter() - shown)
                self.window.show_progress(progress())
                continue
            command = command_of(event, LIVE_KEYS)
            if command is None:
                continue
            what, number = command
            if what is Command.QUIT:
                self.close()
                raise OversightQuit("the person quit the oversight window")
            if what in (Command.BLOCK, Command.BLOCK_WITH):
                if what is Command.BLOCK_WITH:
                    if number >= n_actions:
                        self._say((f"no action {number}: this game has 0-{n_actions - 1}", NOTE))
                        draw()
                        continue
                    choice = number
                return Decision(block=True, safe_action=choice, score=1.0, seconds=time.perf_counter() - shown)
            if what is Command.ALLOW:
                return Decision(block=False, score=0.0, seconds=time.perf_counter() - shown)
            if what in (Command.NEXT_CHOICE, Command.PREVIOUS_CHOICE):
                choice = _cycle(choice, n_actions, 1 if what is Command.NEXT_CHOICE else -1)
            elif what is Command.PAUSE:
                self.paused = not self.paused
                deadline = time.perf_counter() + self.pace_ms / 1000
            elif what in (Command.SLOWER, Command.FASTER):
                self.pace_ms = slower(self.pace_ms) if what is Command.SLOWER else faster(self.pace_ms)
                deadline = shown + self.pace_ms / 1000
            elif what is Command.UNDO:
                self._say(self._undo(decisions))
            elif what is Command.LEGEND:
                self.window.toggle_legend()
            draw()

    def _undo(self, decisions: list[Decision]) -> Line:
        """Take back the latest block not yet undone; the message that says what happened."""
        if not self._given:
            return "nothing to undo: no block of yours is left", NOTE
        given = self._given[-1]
        if given.batch == self._batch:  # still in the batch being reviewed: nothing was stored or executed
            self._given.pop()
            old = decisions[given.position]
            decisions[given.position] = Decision(block=False, score=0.0, seconds=old.seconds)
            self.blocks -= 1
            self.undone += 1
            return f"undone: the block of env {given.position + 1} is retracted (allowed)", NOTE
        if self.label_store is None:
            return "cannot undo a block already executed without its label store (run with --out)", BLOCK
        index = self._stored_label(given)
        if index is None:
            return f"cannot undo: no stored block of episode {given.episode} step {given.step} is left", BLOCK
        self.label_store.relabel(index, False, reviewer="human-undo")
        self._given.pop()
        self.blocks -= 1
        self.undone += 1
        return f"undone: label #{index} relabelled allow (the env already ran the replacement)", NOTE

    def _stored_label(self, given: _Block) -> int | None:
        """The index of the latest stored label of ``given``'s episode and step that still blocks."""
        a = self.label_store.arrays()
        found = np.flatnonzero((a["episode"] == given.episode) & (a["step"] == given.step) & a["blocked"])
        return int(found[-1]) if len(found) else None

    # ----- what the window shows -----

    def _status(self, context: StepContext, action: int, choice: int | None, hint: Decision | None,
                position: int, count: int) -> list[Line]:
        names = _action_names(context)
        planned = replacement_action(context, Decision(block=True, safe_action=choice), action)
        picked = "the game's safe action" if choice is None else "your choice"
        where = f"env {position + 1}/{count}  " if count > 1 else ""
        paused = "   PAUSED (p resumes, . steps)" if self.paused else ""
        lines: list[Line] = [
            (f"{where}episode {context.episode}  step {context.step}{paused}", NOTE if self.paused else DIM),
            (f"proposed: {names[action]}    if blocked, executes: {names[planned]} ({picked})", TEXT),
        ]
        if hint is None:
            lines.append(("Blocker: none loaded", DIM))
        else:
            verdict = "would block" if hint.block else "would allow"
            lines.append((f"Blocker: score {hint.score:.3f} (threshold {self.threshold:.3f}): {verdict}",
                          BLOCK if hint.block else ALLOW))
        previous = ", ".join(self._history.get(context.env_index, ())) or "none yet"
        lines.append((f"previous (proposed>executed): {previous}", DIM))
        per_minute = 60_000 / self.pace_ms
        lines.append((f"decisions {self.decisions:,}  blocks {self.blocks:,}  undone {self.undone:,}  "
                      f"pace {self.pace_ms} ms ({per_minute:,.0f}/min)", TEXT))
        shown = self.message[0] and self.decisions < self._message_until
        lines.append(self.message if shown else ("h: keys   Esc: save and quit", DIM))
        return lines

    def _say(self, message: Line) -> None:
        """Show ``message`` in the status bar for the next few decisions."""
        self.message, self._message_until = message, self.decisions + MESSAGE_DECISIONS

    def _remember(self, context: StepContext, action: int, decision: Decision) -> None:
        names = _action_names(context)
        history = self._history.setdefault(context.env_index, deque(maxlen=HISTORY))
        if decision.block:
            executed = replacement_action(context, decision, action)
            history.appendleft(f"{names[action]}>{names[executed]} BLOCKED")
        else:
            history.appendleft(names[action])


def _cycle(choice: int | None, n_actions: int, step: int) -> int | None:
    """The next replacement choice: None (the game's safe action), then 0 .. n_actions - 1, round."""
    options: list[int | None] = [None, *range(n_actions)]
    return options[(options.index(choice) + step) % len(options)]


@cache
def _names(game: str) -> list[str]:
    from saferl.env.ale import game_action_names
    from saferl.games import get_game

    return game_action_names(get_game(game))


def _action_names(context: StepContext) -> list[str]:
    """The action names of the context's game (``NOOP``, ``FIRE``, ...), read once per game."""
    return _names(context.game.name)
