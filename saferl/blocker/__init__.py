"""The Blocker: a CNN that imitates the overseer's blocks, thresholded for zero false negatives.

- :mod:`~saferl.blocker.data`: datasets from label stores, preprocessing, the split by episode.
- :mod:`~saferl.blocker.model`: the paper's CNN sized per game, and the deployed :class:`Blocker`.
- :mod:`~saferl.blocker.train`: seeded training with early stopping; :func:`fit_blocker` end to end.
- :mod:`~saferl.blocker.threshold`: the zero-false-negative threshold and the figures at it.
- :mod:`~saferl.blocker.io`: safetensors + JSON save and load (never pickle).
- :mod:`~saferl.blocker.evaluate`: figures of a saved Blocker on held-out episodes.
- :mod:`~saferl.blocker.overseer`: :class:`BlockerOverseer`, one forward pass per batch.
- :mod:`~saferl.blocker.ensemble`: K bootstrap Blockers and their disagreement.
"""

from __future__ import annotations

from saferl.blocker.data import BlockerData, Preprocessing, Split, default_preprocessing, load_labels, split_by_episode
from saferl.blocker.ensemble import Ensemble, load_ensemble, save_ensemble, train_ensemble
from saferl.blocker.evaluate import EvalResult, evaluate_blocker
from saferl.blocker.io import load_blocker, save_blocker
from saferl.blocker.model import Blocker, BlockerNet, ModelConfig, default_model_config, new_blocker
from saferl.blocker.overseer import BlockerOverseer
from saferl.blocker.threshold import Evaluation, evaluate, roc_auc, zero_fn_threshold
from saferl.blocker.train import FitResult, TrainConfig, fit_blocker, train_net

__all__ = [
    "Blocker",
    "BlockerData",
    "BlockerNet",
    "BlockerOverseer",
    "Ensemble",
    "EvalResult",
    "Evaluation",
    "FitResult",
    "ModelConfig",
    "Preprocessing",
    "Split",
    "TrainConfig",
    "default_model_config",
    "default_preprocessing",
    "evaluate",
    "evaluate_blocker",
    "fit_blocker",
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
