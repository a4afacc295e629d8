"""The Blocker: a CNN that imitates the overseer's blocks, thresholded for zero false negatives.

- :mod:`~saferl.blocker.data`: datasets from label stores, preprocessing, the split by episode.
- :mod:`~saferl.blocker.model`: the paper's CNN sized per game, and the deployed :class:`Blocker`.
- :mod:`~saferl.blocker.train`: one CNN's seeded training with early stopping.
- :mod:`~saferl.blocker.fit`: :func:`fit_blocker` end to end: cross-fitted members, threshold, novelty, alarm.
- :mod:`~saferl.blocker.threshold`: the zero-false-negative threshold, its promise and the figures at it.
- :mod:`~saferl.blocker.novelty`: which states are unlike every labelled one.
- :mod:`~saferl.blocker.alarm`: the alarm of a degenerate Blocker.
- :mod:`~saferl.blocker.io`: safetensors + JSON save and load (never pickle).
- :mod:`~saferl.blocker.evaluate`: figures of a saved Blocker on held-out episodes.
- :mod:`~saferl.blocker.overseer`: :class:`BlockerOverseer`, one forward pass per batch.
- :mod:`~saferl.blocker.ensemble`: Blockers that decide together (cross-fitted, or bootstrap for deferring).
"""

from __future__ import annotations

from saferl.blocker.data import (
                                 BlockerData,
                                 Folds,
                                 Preprocessing,
                                 Split,
                                 default_preprocessing,
                                 fold_by_episode,
                                 load_labels,
                                 split_by_episode,
)
from saferl.blocker.ensemble import Ensemble, load_ensemble, save_ensemble, train_ensemble
from saferl.blocker.evaluate import EvalResult, evaluate_blocker
from saferl.blocker.fit import FitResult, fit_blocker
from saferl.blocker.io import load_blocker, save_blocker
from saferl.blocker.model import Blocker, BlockerNet, ModelConfig, default_model_config, new_blocker
from saferl.blocker.overseer import BlockerOverseer
from saferl.blocker.threshold import Evaluation, evaluate, roc_auc, zero_fn_threshold
from saferl.blocker.train import TrainConfig, train_net

__all__ = [
    "Blocker",
    "BlockerData",
    "BlockerNet",
    "BlockerOverseer",
    "Ensemble",
    "EvalResult",
    "Evaluation",
    "FitResult",
    "Folds",
    "ModelConfig",
    "Preprocessing",
    "Split",
    "TrainConfig",
    "default_model_config",
    "default_preprocessing",
    "evaluate",
    "evaluate_blocker",
    "fit_blocker",
    "fold_by_episode",
    "load_blocker",
    "load_ensemble",
    "load_labels",
    "new_blocker",
    "roc_auc",
    "save_blocker",
    "save_ensemble",
    "split_by_episode",
    "train_ensemble",
    "train_net",
    "zero_fn_threshold",
]
