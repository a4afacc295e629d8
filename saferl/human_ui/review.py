"""Offline review of a label store: browse the stored decisions, jump to blocks and to a Blocker's mistakes, relabel.

A relabel is appended to the store as an overlay (:meth:`LabelStore.relabel`, reviewer ``review``):
the original records are never rewritten, and readers (Blocker training included) see the latest
relabel of each label. Undo (backspace) appends one more relabel that restores the previous value.
The Blocker's false negatives are labels that block where the Blocker allows (worst first: lowest
score), its false positives labels that allow where it blocks (worst first: highest score).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from saferl.env.ground_truth import HOLD
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.human_ui.keys import REVIEW_KEYS, REVIEW_LEGEND, Command, command_of
from saferl.human_ui.window import ALLOW, BLOCK, DEFAULT_SCALE, DIM, NOTE, TEXT, Line, Window
from saferl.labels.store import LabelStore

REVIEWER = "review"


def blocker_logits(store: LabelStore, scorer: Any) -> np.ndarray:
    """The block logit ``scorer`` (a Blocker or ensemble) gives each label of ``store`` for its proposed action."""
    from saferl.blocker import load_labels

    data = load_labels([store.path], scorer.game, scorer.preprocessing)
    if data.action_names != list(scorer.action_names):
        raise SaferlError(f"--blocker: its actions {scorer.action_names} differ from the labels' {data.action_names}")
    return scorer.logits(data.inputs(np.arange(len(data))), data.actions)


class Reviewer:
    """Browses ``store`` in a window and relabels it (keys: :data:`~saferl.human_ui.keys.REVIEW_KEYS`).

    :param store: a label store open for appending (relabels are appended to it).
    :param logits: the Blocker's block logit of each label (None: no Blocker).
    :param threshold_logit: the Blocker blocks at or above this logit.
    :param scale: the zoom of the frame.
    """

    def __init__(self, store: LabelStore, logits: np.ndarray | None = None, threshold_logit: float = math.nan,
                 scale: int = DEFAULT_SCALE) -> None:
        if not len(store):
            raise SaferlError(f"{store.path} holds no labels to review (LABELS): record some with saferl oversee --out")
        self.store = store
        self.game = get_game(store.game)
        self.logits = logits
        self.threshold_logit = threshold_logit
        self.window = Window(frame_shape=store.frame_shape[:2], scale=scale, title=f"saferl review: {store.path}")
        self.position = 0
        self.relabels = 0
        self.undone = 0
        self.message: Line = ("", TEXT)
        self._done: list[tuple[int, bool]] = []  # (label, its value before the relabel), for undo
        self._visited: dict[Command, tuple[int | None, int]] = {}  # per jump key: the label it showed last, its rank

    # ----- what the Blocker gets wrong -----

    def _blocker_blocks(self) -> np.ndarray:
        return self.logits >= self.threshold_logit

    def false_negatives(self) -> np.ndarray:
        """Labels that block where the Blocker allows, lowest score first (empty without a Blocker)."""
        if self.logits is None:
            return np.empty(0, np.int64)
        found = np.flatnonzero(self.store.arrays()["blocked"] & ~self._blocker_blocks())
        return found[np.argsort(self.logits[found], kind="stable")]

    def false_positives(self) -> np.ndarray:
        """Labels that allow where the Blocker blocks, highest score first (empty without a Blocker)."""
        if self.logits is None:
            return np.empty(0, np.int64)
        found = np.flatnonzero(~self.store.arrays()["blocked"] & self._blocker_blocks())
        return found[np.argsort(-self.logits[found], kind="stable")]

    # ----- the loop -----

    def run(self) -> dict[str, Any]:
        """Show labels until the person quits (Esc or closing the window); the session's summary."""
        started = shown = time.perf_counter()
        try:
            while True:
                self._draw()
                event = self.window.wait_event(None)
                command = command_of(event, REVIEW_KEYS) if event is not None else None
                if command is None:
                    continue
                what = command[0]
                if what is Command.QUIT:
                    break
                before = self.position
                self._apply(what, time.perf_counter() - shown)
                if self.position != before:
                    shown = time.perf_counter()
        finally:
            self.window.close()
        return {**self.summary(), "seconds": round(time.perf_counter() - started, 1)}

    def _apply(self, what: Command, seconds: float) -> None:
        """Carry out one command on the label shown (``seconds``: how long it has been shown)."""
        n = len(self.store)
        self.message = ("", TEXT)
        if what in (Command.NEXT, Command.PREVIOUS):
            self.position = (self.position + (1 if what is Command.NEXT else -1)) % n
        elif what in (Command.FIRST, Command.LAST):
            self.position = 0 if what is Command.FIRST else n - 1
        elif what is Command.NEXT_BLOCK:
            blocks = np.flatnonzero(self.store.arrays()["blocked"])
            rank = int(np.searchsorted(blocks, self.position, side="right"))
            self._jump(blocks, rank, "block")
        elif what in (Command.NEXT_FALSE_NEGATIVE, Command.NEXT_FALSE_POSITIVE):
            kind = "false negative" if what is Command.NEXT_FALSE_NEGATIVE else "false positive"
            if self.logits is None:
                self.message = (f"no Blocker to find {kind}s: saferl review LABELS --blocker DIR", NOTE)
                return
            order = self.false_negatives() if what is Command.NEXT_FALSE_NEGATIVE else self.false_positives()
            last, rank = self._visited.get(what, (None, 0))
            at = np.flatnonzero(order == last)
            rank = int(at[0]) + 1 if len(at) else rank  # the next; or, when the last left the list, the one now in its place
            self._visited[what] = (self._jump(order, rank, f"Blocker {kind}"), rank)
        elif what is Command.TOGGLE:
            current = bool(self.store.arrays()["blocked"][self.position])
            self.store.relabel(self.position, not current, REVIEWER, seconds=seconds)
            self._done.append((self.position, current))
            self.relabels += 1
            self.message = (f"label {self.position + 1:,} relabelled {'allow' if current else 'BLOCK'}", NOTE)
        elif what is Command.UNDO:
            if not self._done:
                self.message = ("nothing to undo: no relabel of this session is left", NOTE)
                return
            self.position, value = self._done.pop()
            self.store.relabel(self.position, value, REVIEWER)
            self.undone += 1
            self.message = (f"undone: label {self.position + 1:,} is {'BLOCK' if value else 'allow'} again", NOTE)
        elif what is Command.LEGEND:
            self.window.toggle_legend()

    def _jump(self, order: np.ndarray, rank: int, kind: str) -> int | None:
        """Show the label at ``rank`` (0-based, wrapping) of ``order``; that label, or None when ``order`` is empty."""
        if not len(order):
            self.message = (f"no {kind}s here", NOTE)
            return None
        rank %= len(order)
        self.position = int(order[rank])
        self.message = (f"{kind} {rank + 1:,} of {len(order):,}", NOTE)
        return self.position

    # ----- what the window shows -----

    def _draw(self) -> None:
        label = self.store.label(self.position)
        arrays = self.store.arrays()
        names = self.store.action_names
        k = self.position
        executed = "held (pruned)" if label.executed_action == HOLD else names[label.executed_action]
        decision = "BLOCK" if label.blocked else "allow"
        if arrays["relabeled"][k]:
            decision += f" (relabelled; first stored as {'BLOCK' if arrays['blocked_original'][k] else 'allow'})"
        lines: list[Line] = [
            (f"label {k + 1:,} of {len(self.store):,}   episode {label.episode}  step {label.step}   "
             f"by {label.overseer} in {label.seconds:.2f} s", DIM),
            (f"proposed: {names[label.proposed_action]}   executed: {executed}   "
             f"catastrophe: {'YES' if label.catastrophe else 'no'}", TEXT),
            (f"label: {decision}", BLOCK if label.blocked else ALLOW),
            self._blocker_line(label.blocked),
            (f"blocks {int(arrays['blocked'].sum()):,}   relabels this session {self.relabels:,}"
             f"   undone {self.undone:,}", TEXT),
            self.message if self.message[0] else ("h: keys   Esc: quit (relabels are saved)", DIM),
        ]
        self.window.draw(label.frame, self.game.danger_zones(None), lines, REVIEW_LEGEND)

    def _blocker_line(self, blocked: bool) -> Line:
        if self.logits is None:
            return "Blocker: none (saferl review LABELS --blocker DIR)", DIM
        from saferl.blocker.model import sigmoid

        blocks = bool(self._blocker_blocks()[self.position])
        verdict = "agrees" if blocks == blocked else ("FALSE NEGATIVE" if blocked else "FALSE POSITIVE")
        return (f"Blocker: score {float(sigmoid(self.logits[self.position])):.3f} (threshold "
                f"{float(sigmoid(self.threshold_logit)):.3f}): {'block' if blocks else 'allow'}, {verdict}",
                ALLOW if blocks == blocked else BLOCK)

    def summary(self) -> dict[str, Any]:
        """The store's counts, the Blocker's mistakes on it and this session's relabels."""
        arrays = self.store.arrays()
        with_blocker = self.logits is not None
        return {
            "labels": len(self.store),
            "blocks": int(arrays["blocked"].sum()),
            "relabels": self.relabels,
            "undone": self.undone,
            "blocker_false_negatives": len(self.false_negatives()) if with_blocker else None,
            "blocker_false_positives": len(self.false_positives()) if with_blocker else None,
        }


def review_labels(path: str | os.PathLike[str], blocker: str | None = None, scale: int = DEFAULT_SCALE) -> dict[str, Any]:
    """Review the label store at ``path`` (with the Blocker saved in folder ``blocker``); the session's summary."""
    from saferl.human_ui.overseer import load_advisor

    with LabelStore.open(path, writable=True) as store:
        logits, threshold = None, math.nan
        if blocker is not None:
            scorer = load_advisor(blocker, store.game)
            logits, threshold = blocker_logits(store, scorer), float(scorer.threshold_logit)
        summary = Reviewer(store, logits, threshold, scale).run()
    return {"path": str(path), "game": store.game, "blocker": blocker, **summary}
