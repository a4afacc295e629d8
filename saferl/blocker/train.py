"""Training one Blocker CNN: seeded, on cuda when present, with a progress bar, TensorBoard curves and early stopping.

:func:`train_net` fits one CNN on the train episodes, stopping when the validation loss has not improved for
``patience`` epochs and keeping the best epoch's weights (the whole recipe, folds and threshold included, is
:func:`saferl.blocker.fit.fit_blocker`).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from saferl.blocker.data import BlockerData, to_float
from saferl.blocker.model import Blocker, ModelConfig, new_blocker
from saferl.blocker.threshold import roc_auc
from saferl.device import resolve_device
from saferl.errors import SaferlError

BALANCES = ("weight", "sample")


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
        whole = {"epochs": self.epochs, "batch_size": self.batch_size, "patience": self.patience, "seed": self.seed,
                 "threads": 1 if self.threads is None else self.threads}
        for name, value in whole.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise SaferlError(f"--{name.replace('_', '-')} must be a whole number of at least "
                                  f"{0 if name == 'seed' else 1}, not {value!r}")
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < float("inf"):
            raise SaferlError(f"--learning-rate must be a finite number > 0, not {self.learning_rate!r}")


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
