"""Training a Blocker: seeded, on cuda when present, with a progress bar, TensorBoard curves and early stopping.

:func:`train_net` fits one CNN on the train episodes, stopping when the validation loss has not
improved for ``patience`` epochs and keeping the best epoch's weights. :func:`fit_blocker` is the
whole recipe: load labels, split by episode, train, set the zero-false-negative threshold on the
validation episodes, evaluate on the test episodes, save.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from saferl.blocker.data import BlockerData, Preprocessing, Split, load_labels, split_by_episode, to_float
from saferl.blocker.io import save_blocker
from saferl.blocker.model import Blocker, ModelConfig, new_blocker
from saferl.blocker.threshold import Evaluation, evaluate, plot_precision_recall, roc_auc, zero_fn_threshold
from saferl.device import resolve_device
from saferl.errors import SaferlError

BALANCES = ("weight", "sample")
PLOT = "test-precision-recall.png"


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    :param epochs: at most this many passes over the training examples.
    :param batch_size: examples per gradient step.
    :param learning_rate: Adam's step size (the paper's 2e-3).
    :param patience: stop after this many epochs without a lower validation loss. The validation loss of the
        larger CNN can sit above its first epoch's for 5 epochs before it falls (a Space Invaders Blocker on 2,811
        labels: best epoch 26 of 30); at patience 5 training stopped at epoch 6 and kept the untrained first.
    :param balance: ``weight`` (loss weights rebalancing positives to half, as the paper) or
        ``sample`` (draw positives and negatives equally often).
    :param seed: seeds the weights, the batches and dropout.
    :param device: ``auto`` (cuda when present), ``cpu``, ``cuda``, ...
    :param threads: CPU threads for torch (None: torch's default; 1 is fastest on a busy machine).
    :param progress: show a progress bar.
    """

    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 10
    balance: str = "weight"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.balance not in BALANCES:
            raise SaferlError(f"unknown balance {self.balance!r} (--balance): choose one of {', '.join(BALANCES)}")
        if min(self.epochs, self.batch_size, self.patience, self.threads or 1) < 1:
            raise SaferlError("--epochs, --batch-size, --patience and --threads must be at least 1")


@dataclass
class TrainedNet:
    """The outcome of :func:`train_net`: the blocker (threshold not yet set) and how training went."""

    blocker: Blocker
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    device: str


def _loss(logits: torch.Tensor, blocked: np.ndarray, pos_weight: torch.Tensor) -> torch.Tensor:
    """The (positive-weighted) binary cross-entropy of block logits against the overseer's decisions."""
    targets = torch.as_tensor(blocked, dtype=torch.float32, device=logits.device)
    weight = pos_weight.to(logits.device)
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=weight)


def _epoch_order(data: BlockerData, train: np.ndarray, balance: str, rng: np.random.Generator) -> np.ndarray:
    """The training examples of one epoch, in order: a shuffle, or a positive/negative-balanced draw."""
    if balance == "weight":
        return rng.permutation(train)
    positive = data.blocked[train]
    weights = np.where(positive, 0.5 / positive.sum(), 0.5 / (~positive).sum())
    return rng.choice(train, size=len(train), p=weights / weights.sum())


def example_logits(blocker: Blocker, data: BlockerData, indices: np.ndarray) -> np.ndarray:
    """The logits of a Blocker (or an ensemble) on examples ``indices`` of ``data``."""
    return blocker.logits(data.inputs(indices), data.actions[indices]) if len(indices) else np.empty(0)


def train_net(data: BlockerData, train: np.ndarray, val: np.ndarray, model_config: ModelConfig | None = None,
              config: TrainConfig = TrainConfig(), log_dir: str | os.PathLike[str] | None = None) -> TrainedNet:
    """Train a Blocker CNN on examples ``train`` of ``data``, early-stopping on the loss of examples ``val``.

    :param log_dir: write TensorBoard curves (``blocker/loss_train``, ``blocker/loss_val``,
        ``blocker/auc_val``) there.
    """
    from tqdm import tqdm

    device = resolve_device(config.device)
    positives = int(data.blocked[train].sum())
    if not positives or positives == len(train):
        raise SaferlError(f"the training episodes hold {positives} blocks of {len(train)} labels: a Blocker needs "
                          "both blocks and passes; record more episodes")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    blocker = new_blocker(data.game, data.action_names, data.preprocessing, model_config, seed=config.seed)
    blocker.net.to(device)
    optimizer = torch.optim.Adam(blocker.net.parameters(), lr=config.learning_rate)
    # Rebalance positives to half the loss (the paper); with balanced sampling the batches are balanced already.
    ratio = (len(train) - positives) / positives if config.balance == "weight" else 1.0
    pos_weight = torch.tensor(ratio, device=device)
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(log_dir))
    history: list[dict[str, float]] = []
    best = (float("inf"), 0, copy.deepcopy(blocker.net.state_dict()))
    start = time.perf_counter()
    batches = -(-len(train) // config.batch_size)
    bar = tqdm(total=config.epochs * batches, desc=f"train blocker ({data.game}, {device.type})", unit="batch",
               disable=not config.progress)
    try:
        for epoch in range(1, config.epochs + 1):
            blocker.net.train()
            order, total = _epoch_order(data, train, config.balance, rng), 0.0
            for k in range(0, len(order), config.batch_size):
                batch = order[k:k + config.batch_size]
                x = to_float(data.inputs(batch), device)
                loss = _loss(blocker.net(x, torch.as_tensor(data.actions[batch], device=device)), data.blocked[batch],
                             pos_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
                bar.update()
            val_logits = example_logits(blocker, data, val)
            row = {"epoch": epoch, "loss_train": total / len(order),
                   "loss_val": float(_loss(torch.from_numpy(val_logits), data.blocked[val], pos_weight)),
                   "auc_val": roc_auc(val_logits, data.blocked[val])}
            history.append(row)
            if writer is not None:
                for key in ("loss_train", "loss_val", "auc_val"):
                    writer.add_scalar(f"blocker/{key}", row[key], epoch)
            bar.set_postfix(epoch=epoch, loss=f"{row['loss_train']:.4f}", val=f"{row['loss_val']:.4f}",
                            auc=f"{row['auc_val']:.4f}")
            if row["loss_val"] < best[0]:
                best = (row["loss_val"], epoch, copy.deepcopy(blocker.net.state_dict()))
            elif epoch - best[1] >= config.patience:
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    blocker.net.load_state_dict(best[2])
    return TrainedNet(blocker, history, best[1], time.perf_counter() - start, str(device))


@dataclass
class FitResult:
    """What :func:`fit_blocker` produced: the thresholded Blocker and its validation and test figures."""

    blocker: Blocker
    data: BlockerData
    split: Split
    validation: Evaluation
    test: Evaluation
    trained: TrainedNet
    test_logits: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """Figures for the CLI and reports."""
        episodes = self.split.episodes(self.data)
        return {
            "game": self.data.game,
            "labels": len(self.data),
            "blocks": int(self.data.blocked.sum()),
            "episodes": int(len(np.unique(self.data.episodes))),
            **{f"{name}_episodes": len(ids) for name, ids in episodes.items()},
            **{f"{name}_examples": len(getattr(self.split, name)) for name in ("train", "val", "test")},
            "members": len(getattr(self.blocker, "members", [self.blocker])),
            "epochs": len(self.trained.history),
            "best_epoch": self.trained.best_epoch,
            "train_seconds": round(self.trained.seconds, 1),
            "device": self.trained.device,
            "threshold": self.blocker.threshold,
            "val_false_positive_rate": self.validation.false_positive_rate,
            "examples": self.test.examples,
            "positives": self.test.positives,
            "false_negatives": self.test.false_negatives,
            "false_positives": self.test.false_positives,
            "false_positive_rate": self.test.false_positive_rate,
            "auc": self.test.as_dict()["auc"],
        }


def training_record(data: BlockerData, split: Split) -> list[dict[str, Any]]:
    """Per label store: path, digest, counts and which of its episodes went to train, val and test."""
    records = []
    for k, source in enumerate(data.sources):
        record: dict[str, Any] = asdict(source)
        for name in ("train", "val", "test"):
            indices = getattr(split, name)
            record[f"{name}_episodes"] = np.unique(data.store_episode[indices][data.store[indices] == k]).tolist()
        records.append(record)
    return records


def calibrate(blocker: Blocker, data: BlockerData, split: Split,
              margin: float = 0.0) -> tuple[Evaluation, Evaluation, np.ndarray]:
    """Set ``blocker``'s zero-false-negative threshold on the validation examples.

    :return: its figures on the validation and the test examples, and its test logits.
    """
    val_logits = example_logits(blocker, data, split.val)
    blocker.threshold_logit = zero_fn_threshold(val_logits, data.blocked[split.val], margin)
    test_logits = example_logits(blocker, data, split.test)
    return (evaluate(val_logits, data.blocked[split.val], blocker.threshold_logit),
            evaluate(test_logits, data.blocked[split.test], blocker.threshold_logit), test_logits)


def fit_blocker(label_paths: Sequence[str | os.PathLike[str]], game: str, out: str | os.PathLike[str] | None = None,
                preprocessing: Preprocessing | None = None, model_config: ModelConfig | None = None,
                config: TrainConfig = TrainConfig(), margin: float = 0.0,
                fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), members: int = 1) -> FitResult:
    """Train, threshold, evaluate and (with ``out``) save a Blocker on the label stores ``label_paths``.

    The split by episode is seeded with ``config.seed``. ``out`` receives the Blocker (see
    :mod:`saferl.blocker.io`), TensorBoard curves in ``tensorboard/`` and the test precision-recall plot.
    With ``members`` > 1 it is a bootstrap :class:`~saferl.blocker.ensemble.Ensemble` of that many Blockers.
    """
    if members < 1:
        raise SaferlError(f"--ensemble must be at least 1, not {members}")
    data = load_labels(label_paths, game, preprocessing)
    split = split_by_episode(data, fractions, seed=config.seed)
    log_dir = Path(out) / "tensorboard" if out is not None else None
    if members > 1:
        from saferl.blocker.ensemble import train_ensemble

        start = time.perf_counter()
        ensemble = train_ensemble(data, split, members, model_config, config, margin)
        trained = TrainedNet(ensemble, [], 0, time.perf_counter() - start, str(resolve_device(config.device)))
    else:
        trained = train_net(data, split.train, split.val, model_config, config, log_dir)
    blocker = trained.blocker
    validation, test, test_logits = calibrate(blocker, data, split, margin)
    result = FitResult(blocker, data, split, validation, test, trained, test_logits)
    blocker.metadata = {
        "margin": margin,
        "train_config": asdict(config),
        "training_data": training_record(data, split),
        "metrics": {"validation": validation.as_dict(), "test": test.as_dict()},
        "history": trained.history,
        "summary": result.summary(),
    }
    if out is not None:
        if members > 1:
            from saferl.blocker.ensemble import save_ensemble

            save_ensemble(blocker, out)
        else:
            save_blocker(blocker, out)
        plot_precision_recall(test_logits, data.blocked[split.test], blocker.threshold_logit, Path(out) / PLOT,
                              f"{game} Blocker, test episodes")
    return result
