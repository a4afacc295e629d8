"""Replay a watch-every-frame label store through the deferring overseer: its labels and misses, offline.

A run whose overseer looked at every frame left a label store holding the answer to every action the
agent proposed, in order. Fed through a :class:`~saferl.blocker.deferring.DeferringOverseer` in the
batches the envs made them, with the stored answers standing in for the asker, it tells in minutes,
without the agent, how many of those decisions a deferring setting would have asked for and which
blocks its ensemble would have let pass unasked. It is an estimate: deferring would have changed the
agent's experience (its false positives block actions the person let pass): ``saferl replay-deferring STORE
--overseer-option KEY=VALUE ... --json`` prints the labels it would have asked for per window of decisions next to
the blocks its ensemble would have let pass unasked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saferl.blocker.deferring import DeferralConfig, DeferringOverseer
from saferl.errors import SaferlError
from saferl.games import GameState, get_game
from saferl.labels.store import LabelStore
from saferl.oversight.decision import BaseOverseer, Decision, StepContext

WINDOW = 2000
"""Decisions per window of the asked share's course."""


class RecordedAnswers(BaseOverseer):
    """The asker of a replay: answers each decision as the store says it was answered (``env_index`` is the
    decision's place in the batch being replayed)."""

    name = "recorded"

    def __init__(self) -> None:
        self.blocked = np.zeros(0, bool)
        self.seconds = np.zeros(0)

    def review(self, context: StepContext, action: int) -> Decision:
        k = context.env_index
        return Decision(block=bool(self.blocked[k]), safe_action=None, seconds=float(self.seconds[k]))


@dataclass
class ReplayResult:
    """What deferring would have done on a stored run's decisions."""

    decisions: int
    blocks: int
    asked: int
    missed_blocks: int
    false_positives: int
    asked_by_window: list[float]
    overseer: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Flat figures for printing and ``--json``."""
        return {"decisions": self.decisions, "blocks": self.blocks, "asked": self.asked,
                "asked_share": round(self.asked / max(self.decisions, 1), 4),
                "missed_blocks": self.missed_blocks, "false_positives": self.false_positives,
                f"asked_share_per_{WINDOW}": self.asked_by_window, **self.overseer}


def replay_deferral(labels: str | os.PathLike[str], config: DeferralConfig, n_envs: int = 4,
                    limit: int | None = None, seed: int = 0,
                    progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay the first ``limit`` labels of the store at ``labels`` (all: None) through a deferring overseer with
    ``config``, ``n_envs`` decisions a batch (as many as the recording run had envs).

    :param progress: called with the number of decisions replayed after each batch.
    """
    if n_envs < 1:
        raise SaferlError(f"--envs must be at least 1, not {n_envs}")
    if limit is not None and limit < 1:
        raise SaferlError(f"--limit must be at least 1 label, not {limit}")
    with LabelStore.open(labels) as store:
        game, action_names = store.game, store.action_names
        records = store.arrays()
        n = len(store) if limit is None else min(int(limit), len(store))
        if n == 0:
            raise SaferlError(f"{store.file} holds no labels to replay: record a run that watches every frame")
        blocked = records["blocked"][:n].astype(bool)
        asker = RecordedAnswers()
        overseer = DeferringOverseer(asker, game, action_names, config, seed)
        rules = get_game(game)
        no_ram = np.zeros(128, np.uint8)
        asked = np.zeros(n, bool)
        blocks_made = np.zeros(n, bool)
        for start in range(0, n, n_envs):
            rows = np.arange(start, min(n, start + n_envs))
            frames = store.frames(rows.tolist())
            contexts = [StepContext(game=rules, state=GameState(no_ram, 0, frame), episode=int(records["episode"][i]),
                                    step=int(records["step"][i]), env_index=k)
                        for k, (i, frame) in enumerate(zip(rows, frames))]
            asker.blocked, asker.seconds = blocked[rows], records["seconds"][rows]
            decisions = overseer.review_batch(contexts, records["proposed_action"][rows].tolist())
            asked[rows] = [d.label for d in decisions]
            blocks_made[rows] = [d.block for d in decisions]
            if progress is not None:
                progress(int(rows[-1]) + 1)
    own = ~asked
    return ReplayResult(decisions=n, blocks=int(blocked.sum()), asked=int(asked.sum()),
                        missed_blocks=int((own & blocked & ~blocks_made).sum()),
                        false_positives=int((own & ~blocked & blocks_made).sum()),
                        asked_by_window=[round(float(asked[k:k + WINDOW].mean()), 3) for k in range(0, n, WINDOW)],
                        overseer=overseer.stats())


def deferral_config(options: Sequence[tuple[str, Any]]) -> DeferralConfig:
    """The :class:`DeferralConfig` of ``--overseer-option KEY=VALUE`` pairs (the asker's options do not apply)."""
    return DeferralConfig.from_options({key: value for key, value in options if key not in ("asker", "asker_options")})
