"""Evaluating a saved Blocker on label stores, honestly: only on episodes it was not trained or thresholded on.

A store the Blocker was trained on (recognised by its digest, or by its path when labels were
appended since) contributes only the episodes that were neither in its training nor in its
validation part: its test episodes and any recorded later. Any other store is held out entirely.

Decisions are the Blocker's as it oversees: a logit at or above the threshold blocks, and in a state its novelty
check calls novel every action blocks but one. Label stores keep no RAM, so the one action that passes there is
taken as the one the Blocker scores lowest (the overseer passes the game's safe action, which the game's map
needs RAM to name).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saferl.blocker.data import BlockerData, load_labels
from saferl.blocker.threshold import Evaluation, evaluate, plot_precision_recall
from saferl.errors import SaferlError

PLOT = "eval-precision-recall.png"


def novel_blocks(scorer: Any, inputs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Which (input, proposed action) examples the Blocker blocks because the state is novel: every action but the
    one it scores lowest (all False for a Blocker without a novelty check)."""
    if not len(inputs):
        return np.zeros(0, bool)
    logits, novel = scorer.assess(inputs)
    return novel & (np.asarray(actions) != logits.argmin(axis=1))


def held_out(data: BlockerData, training_data: Sequence[dict[str, Any]]) -> np.ndarray:
    """Which examples of ``data`` the Blocker described by ``training_data`` (its metadata) never fitted."""
    keep = np.ones(len(data), bool)
    for k, source in enumerate(data.sources):
        match = next((r for r in training_data if r.get("digest") == source.digest), None)
        match = match or next((r for r in training_data if r.get("path") == source.path), None)
        if match is not None:
            seen = list(match.get("train_episodes", [])) + list(match.get("val_episodes", []))
            keep &= ~((data.store == k) & np.isin(data.store_episode, seen))
    return keep


@dataclass
class EvalResult:
    """A Blocker's figures on the held-out examples of some label stores."""

    evaluation: Evaluation
    examples_given: int
    held_out_episodes: int
    plot: Path | None
    logits: np.ndarray = field(repr=False)
    promised_fn_rate: float | None = None
    threshold_alone: Evaluation | None = None

    def summary(self) -> dict[str, Any]:
        """Figures for the CLI: the evaluation's plus where they come from, and (for a Blocker with a novelty
        check) the false negatives and positives of its threshold alone, as it oversees with ``--no-novelty``."""
        alone = self.threshold_alone
        return {**self.evaluation.as_dict(), "promised_fn_rate": self.promised_fn_rate,
                "labels_given": self.examples_given,
                "held_out_episodes": self.held_out_episodes, "plot": str(self.plot) if self.plot else None,
                "threshold_alone": None if alone is None else
                {"false_negatives": alone.false_negatives, "false_positives": alone.false_positives,
                 "false_positive_rate": alone.false_positive_rate}}


def evaluate_blocker(blocker: Any, label_paths: Sequence[str | os.PathLike[str]],
                     plot_dir: str | os.PathLike[str] | None = None) -> EvalResult:
    """Evaluate ``blocker`` at its threshold on the held-out labels of ``label_paths``; plot there."""
    data = load_labels(label_paths, blocker.game, blocker.preprocessing)
    if data.action_names != blocker.action_names:
        raise SaferlError(f"the labels' actions {data.action_names} differ from the Blocker's {blocker.action_names}")
    indices = np.flatnonzero(held_out(data, blocker.metadata.get("training_data", [])))
    if not len(indices):
        raise SaferlError("every label given was used to train or threshold this Blocker: evaluate it on other "
                          "episodes (record new ones with saferl oversee --out NEW_DIR)")
    inputs = data.inputs(indices)
    logits = blocker.logits(inputs, data.actions[indices])
    if not np.isfinite(logits).all():
        raise SaferlError("the Blocker produced NaN or infinite scores: its weights are damaged; retrain it")
    novel = novel_blocks(blocker, inputs, data.actions[indices])
    positives = data.blocked[indices]
    plot = None
    if plot_dir is not None:
        plot = plot_precision_recall(logits, positives, blocker.threshold_logit, Path(plot_dir) / PLOT,
                                     f"{blocker.game} Blocker, held-out episodes", novel)
    promised = blocker.metadata.get("summary", {}).get("promised_fn_rate")
    alone = evaluate(logits, positives, blocker.threshold_logit) if getattr(blocker, "novelty", None) else None
    return EvalResult(evaluate(logits, positives, blocker.threshold_logit, novel), len(data),
                      int(np.unique(data.episodes[indices]).size), plot, logits,
                      float(promised) if isinstance(promised, (int, float)) else None, alone)
