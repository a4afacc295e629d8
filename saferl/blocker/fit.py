"""The whole recipe of a Blocker: cross-fitted members, a threshold that holds on fresh episodes, a novelty check,
the degeneration alarm, test figures, and the saved folder.

Cross-fitting. The labels' episodes are dealt into a test part (20%) and K folds (3 by default). Member k trains on
the other folds, early-stopping on fold k, and scores fold k, which it never trained on: every fitted episode is
validation once, so all the fitted blocks (not one validation part's few) set the threshold. The Blocker blocks
when *any* member's logit reaches the threshold, which is the lowest out-of-fold logit of a block (less a
``margin``). A fresh block is missed only if every member misses it, and the member that never saw its fold is a
draw of "a member that never saw it": so the threshold's promise (:func:`~saferl.blocker.threshold.fn_rate_bound`)
holds for the deployed Blocker. Measured on Pong (8,000 labels of random play from one seed, 3 folds): 0 false
negatives on fresh stores from 3 other seeds (491 blocks), FPR 0.4-0.6%, where one network thresholded on its two
validation episodes missed 1-3 blocks of each.

Novelty (:mod:`~saferl.blocker.novelty`): states unlike every labelled one pass only as the game's safe action.

The alarm (:mod:`~saferl.blocker.alarm`): the share of out-of-fold decisions the Blocker blocks, beside the share
its teacher blocked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saferl.blocker.alarm import degeneration_alarm
from saferl.blocker.data import BlockerData, Folds, Preprocessing, fold_by_episode, load_labels
from saferl.blocker.ensemble import Ensemble, save_ensemble
from saferl.blocker.evaluate import novel_blocks
from saferl.blocker.model import ModelConfig, sigmoid
from saferl.blocker.novelty import QUANTILE, fit_novelty
from saferl.blocker.threshold import Evaluation, evaluate, fn_rate_bound, plot_precision_recall, zero_fn_threshold
from saferl.blocker.train import TrainConfig, TrainedNet, example_logits, train_net
from saferl.errors import SaferlError

PLOT = "test-precision-recall.png"
CONFIDENCE = 0.95


@dataclass
class FitResult:
    """What :func:`fit_blocker` produced: the Blocker, its out-of-fold (validation) and test figures, the alarm."""

    blocker: Ensemble
    data: BlockerData
    folds: Folds
    validation: Evaluation
    test: Evaluation
    trained: list[TrainedNet]
    seconds: float
    alarm: str | None
    test_logits: np.ndarray = field(repr=False)
    misses: int = 0
    missed: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Figures for the CLI and reports: the promise next to what the test episodes measured."""
        validation, test = self.validation, self.test
        return {
            "game": self.data.game,
            "labels": len(self.data),
            "blocks": int(self.data.blocked.sum()),
            "episodes": int(len(np.unique(self.data.episodes))),
            "fitted_episodes": int(len(np.unique(self.data.episodes[self.folds.fitted]))),
            "test_episodes": int(len(np.unique(self.data.episodes[self.folds.test]))),
            "fitted_examples": len(self.folds.fitted),
            "test_examples": len(self.folds.test),
            "members": len(self.blocker.members),
            "epochs": [len(net.history) for net in self.trained],
            "best_epochs": [net.best_epoch for net in self.trained],
            "train_seconds": round(self.seconds, 1),
            "device": self.trained[0].device,
            "threshold": self.blocker.threshold,
            "val_positives": validation.positives,
            "promised_fn_rate": fn_rate_bound(validation.positives, CONFIDENCE, self.misses),
            "misses": self.misses,
            "missed_blocks": self.missed,
            "promise_confidence": CONFIDENCE,
            "val_false_positive_rate": validation.false_positive_rate,
            "val_block_share": validation.block_share,
            "teacher_block_share": validation.teacher_share,
            "val_novel_share": validation.novel / max(validation.examples, 1),
            "alarm": self.alarm,
            "examples": test.examples,
            "positives": test.positives,
            "false_negatives": test.false_negatives,
            "false_negative_rate": test.as_dict()["false_negative_rate"],
            "false_positives": test.false_positives,
            "false_positive_rate": test.false_positive_rate,
            "block_share": test.block_share,
            "novel": test.novel,
            "auc": test.as_dict()["auc"],
        }


def missed_blocks(data: BlockerData, fitted: np.ndarray, out_of_fold: np.ndarray,
                  threshold: float) -> list[dict[str, Any]]:
    """The out-of-fold blocks scored below ``threshold``, lowest first: each one's store, episode, label index in its
    store and block probability."""
    below = fitted[data.blocked[fitted] & (out_of_fold[fitted] < threshold)]
    first = {k: int(np.flatnonzero(data.store == k)[0]) for k in np.unique(data.store[below]).tolist()}
    return [{"store": data.sources[int(data.store[i])].path, "episode": int(data.store_episode[i]),
             "label": int(i) - first[int(data.store[i])], "score": float(sigmoid(out_of_fold[i]))}
            for i in below[np.argsort(out_of_fold[below])]]


def training_record(data: BlockerData, parts: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per label store: path, digest, counts and which of its episodes went to each part (``train``, ...)."""
    records = []
    for k, source in enumerate(data.sources):
        record: dict[str, Any] = asdict(source)
        for name, indices in parts.items():
            record[f"{name}_episodes"] = np.unique(data.store_episode[indices][data.store[indices] == k]).tolist()
        records.append(record)
    return records


def cross_fit(data: BlockerData, folds: Folds, model_config: ModelConfig | None, config: TrainConfig,
              log_dir: str | os.PathLike[str] | None = None) -> tuple[list[TrainedNet], np.ndarray]:
    """One member per fold, trained on the other folds and early-stopped on its own; with each fitted example's
    out-of-fold logit (NaN for the test examples)."""
    trained, out_of_fold = [], np.full(len(data), np.nan)
    for k, fold in enumerate(folds.folds):
        train = np.sort(np.concatenate([other for j, other in enumerate(folds.folds) if j != k]))
        member_config = TrainConfig(**{**asdict(config), "seed": config.seed * 100 + k})
        member_log = Path(log_dir) / f"member-{k}" if log_dir is not None else None
        net = train_net(data, train, fold, model_config, member_config, member_log)
        trained.append(net)
        out_of_fold[fold] = example_logits(net.blocker, data, fold)
    return trained, out_of_fold


def feature_views(blocker: Any, data: BlockerData) -> np.ndarray:
    """A member's views (:meth:`~saferl.blocker.model.Blocker.features`) of every example of ``data``."""
    chunks = [blocker.features(data.inputs(np.arange(k, min(k + 4096, len(data))))) for k in range(0, len(data), 4096)]
    return np.concatenate(chunks)


def check_fit_options(margin: float, folds: int, misses: int = 0) -> None:
    """Refuse a threshold ``margin`` outside [0, 1), fewer than 2 ``folds`` or negative ``misses``, before any
    work."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin < 1.0:
        raise SaferlError(f"the threshold margin must be a number in [0, 1), not {margin!r} (--margin)")
    if isinstance(misses, bool) or not isinstance(misses, int) or misses < 0:
        raise SaferlError(f"misses must be a whole number >= 0, not {misses!r} (--misses)")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise SaferlError(f"--folds must be a whole number of at least 2 (each fold validates the others' Blocker), "
                          f"not {folds!r}")


def fit_blocker(label_paths: Sequence[str | os.PathLike[str]], game: str, out: str | os.PathLike[str] | None = None,
                preprocessing: Preprocessing | None = None, model_config: ModelConfig | None = None,
                config: TrainConfig = TrainConfig(), margin: float = 0.0, folds: int = 3,
                test_fraction: float = 0.2, novelty_quantile: float = QUANTILE, novelty: bool = True,
                misses: int = 0) -> FitResult:
    """Cross-fit, threshold, check, evaluate and (with ``out``) save a Blocker on the label stores ``label_paths``.

    The folds are seeded with ``config.seed``. ``out`` receives the Blocker (an ensemble folder, see
    :mod:`saferl.blocker.ensemble`), TensorBoard curves per member in ``tensorboard/`` and the test
    precision-recall plot.

    :param margin: lower the threshold further to also block this share of the out-of-fold passes.
    :param folds: members, one per fold of episodes (at least 2).
    :param novelty_quantile: the share of held-out labelled states the novelty radius covers.
    :param novelty: give the Blocker its novelty check (without it, only the members' logits decide).
    :param misses: out-of-fold blocks the threshold may miss, the lowest-scored; the summary lists them
        (``missed_blocks``: store, episode, label index) for a person to review (``saferl review``).
    """
    check_fit_options(margin, folds, misses)
    start = time.perf_counter()
    data = load_labels(label_paths, game, preprocessing)
    parts = fold_by_episode(data, folds, test_fraction, seed=config.seed)
    fitted = parts.fitted
    trained, out_of_fold = cross_fit(data, parts, model_config, config,
                                     Path(out) / "tensorboard" if out is not None else None)
    threshold = zero_fn_threshold(out_of_fold[fitted], data.blocked[fitted], margin, misses)
    check, novel = None, np.zeros(len(data.blocked), bool)
    if novelty:
        views = [feature_views(net.blocker, data) for net in trained]
        check, novel = fit_novelty(views, parts.folds, novelty_quantile, seed=config.seed)
    blocker = Ensemble([net.blocker for net in trained], threshold, rule="max", novelty=check)
    validation = evaluate(out_of_fold[fitted], data.blocked[fitted], threshold, novel[fitted])
    test_inputs = data.inputs(parts.test)
    test_logits = example_logits(blocker, data, parts.test)
    test_novel = novel_blocks(blocker, test_inputs, data.actions[parts.test])
    test = evaluate(test_logits, data.blocked[parts.test], threshold, test_novel)
    alarm = degeneration_alarm(validation.block_share, validation.teacher_share, blocker.threshold)
    result = FitResult(blocker, data, parts, validation, test, trained, time.perf_counter() - start, alarm,
                       test_logits, misses, missed_blocks(data, fitted, out_of_fold, threshold))
    blocker.metadata = {
        "margin": margin,
        "misses": misses,
        "folds": folds,
        "train_config": asdict(config),
        "training_data": training_record(data, parts.parts()),
        "metrics": {"validation": validation.as_dict(), "test": test.as_dict()},
        "history": [net.history for net in trained],
        "summary": result.summary(),
    }
    if out is not None:
        save_ensemble(blocker, out)
        plot_precision_recall(test_logits, data.blocked[parts.test], threshold, Path(out) / PLOT,
                              f"{game} Blocker, test episodes", test_novel)
    return result
