"""Novelty against the labels: is a state unlike every labelled state, so that the Blocker's word is not enough?

A Blocker is only as good as its labels: a state far from all of them (Pong's paddle deep in the bottom zone when
the labels come from play that never went there) is scored by weights that never saw anything like it, and a
Blocker trained on random play let most of such states through.

Where it is measured: in each member's own view of the state (:meth:`~saferl.blocker.model.BlockerNet.features`,
the first fully connected layer before the action joins: 10 numbers for Pong, 20 for the larger CNN). A member
sees what decides blocks and little else, so a paddle where no paddle was moves its view far, while a ball in a new
place barely does. A state is novel when, for some member, its view lies farther from every labelled state's view
than that member's radius.

Calibration is out of fold: member k never trained on fold k, so the distances from fold k's views to the other
folds' views are what a fresh state's distance looks like; the radius is their ``quantile``. A fresh state from
the labels' own distribution is then novel to one member with probability about ``1 - quantile`` (to any of K
members, at most K times that).

Measured on Pong (8,000 labels of random play, 3 folds, quantile 0.995): 0.5-0.6% of fresh random-play states from
two other seeds novel; 96-97% of the states of a policy that pushes the paddle down 50% of the time (a region the
labels never reached), and with them every block of that policy's that the members' logits missed (0 of 4,878
missed, against 1,354 of 2,453 without the check). Memories in the sketch of the pixels (4x4 means, nearest
neighbours in 32 principal components) let 15-873 of those through, depending on the settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from saferl.blocker.model import SMALL_BATCH, one_thread_if
from saferl.errors import SaferlError

QUANTILE = 0.995
MEMORY = 16384  # labelled views kept per member (a random sample beyond that)
CHUNK = 2048


def squared_distances(queries: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """The squared Euclidean distances between the rows of ``queries`` and of ``memory`` (Q x M)."""
    return np.maximum((queries ** 2).sum(1)[:, None] + (memory ** 2).sum(1)[None, :] - 2.0 * queries @ memory.T, 0.0)


def nearest_distances(queries: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """The distance from each row of ``queries`` to its nearest row of ``memory`` (inf when memory is empty)."""
    if not len(memory):
        return np.full(len(queries), math.inf)
    parts = [squared_distances(queries[k:k + CHUNK], memory).min(axis=1) for k in range(0, len(queries), CHUNK)]
    return np.sqrt(np.concatenate(parts)) if parts else np.empty(0)


@dataclass
class Novelty:
    """Which states lie, in some member's view, farther from every labelled state than that member's radius.

    :param memories: per member, the views of the labelled states (M x units).
    :param radii: per member, the distance beyond which a view is novel.
    :param quantile: the share of held-out labelled states the radii cover (their calibration).
    """

    memories: list[np.ndarray]
    radii: list[float]
    quantile: float = QUANTILE

    def __post_init__(self) -> None:
        if not self.memories or len(self.memories) != len(self.radii):
            raise SaferlError("the novelty check needs one memory and one radius per member: retrain the Blocker")
        if any(memory.ndim != 2 or not len(memory) for memory in self.memories):
            raise SaferlError("a novelty memory is not a non-empty table of views: retrain the Blocker")
        if not all(math.isfinite(radius) and radius > 0 for radius in self.radii):
            raise SaferlError(f"the novelty radii {self.radii} are not all positive finite numbers: retrain the Blocker")
        if not 0.5 <= self.quantile < 1.0:
            raise SaferlError(f"the novelty quantile must lie in [0.5, 1), not {self.quantile}")
        # Per step only the queries change: keep each memory transposed and its squared norms (0.1 ms for 8 views
        # against 8,000 labelled ones, against 2 ms recomputing them, measured on a busy core). They are torch
        # tensors so that a review's product runs on one thread: numpy's BLAS runs it on all cores, and on a busy
        # machine its threads' waiting for each other made the check of 8 views 10 times slower (measured).
        # Only distinct views count for the nearest one: a memory of Pong labels holds about 3,000 distinct views in
        # 16,384 (a paddle and ball seen again and again), so each check does a fifth of the work.
        distinct = [np.unique(np.asarray(memory, np.float32), axis=0) for memory in self.memories]
        self._transposed = [torch.from_numpy(np.ascontiguousarray(memory.T)) for memory in distinct]
        self._norms = [torch.from_numpy((memory ** 2).sum(axis=1)) for memory in distinct]

    def novel(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """Which states are novel, given each member's views of them (per member: B x units)."""
        if len(views) != len(self.memories):
            raise SaferlError(f"{len(views)} views for a novelty check of {len(self.memories)} members")
        flags = np.zeros(len(views[0]), bool)
        with torch.inference_mode(), one_thread_if(len(flags) <= SMALL_BATCH):
            for view, transposed, norms, radius in zip(views, self._transposed, self._norms, self.radii):
                if view.shape[1:] != tuple(transposed.shape[:1]):
                    raise SaferlError("the Blocker's views do not fit its novelty memory: retrain the Blocker")
                view = torch.from_numpy(np.asarray(view, np.float32))
                squared = (norms[None, :] - 2.0 * (view @ transposed)).amin(dim=1) + (view ** 2).sum(dim=1)
                flags |= (squared > radius * radius).numpy()
        return flags

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (``memory-<k>``)."""
        return {f"memory-{k}": memory for k, memory in enumerate(self.memories)}


def fit_novelty(views: Sequence[np.ndarray], folds: Sequence[np.ndarray], quantile: float = QUANTILE,
                memory: int = MEMORY, seed: int = 0) -> tuple[Novelty, np.ndarray]:
    """Fit the check on the labelled states, calibrated out of fold.

    :param views: per member k (the one that never trained on ``folds[k]``), its views of every example (N x units).
    :param folds: example indices per fold of whole episodes.
    :return: the check, and which examples are novel out of fold (each fold's examples to its own member).
    """
    if len(views) != len(folds) or len(folds) < 2:
        raise SaferlError("novelty is calibrated out of fold: give one member's views per fold, at least 2 folds")
    if not 0.5 <= quantile < 1.0:
        raise SaferlError(f"the novelty quantile must lie in [0.5, 1), not {quantile}")
    rng = np.random.default_rng(seed)
    fitted = np.sort(np.concatenate(folds))
    out_of_fold = np.zeros(len(views[0]), bool)
    memories, radii = [], []
    for view, fold in zip(views, folds):
        view = np.asarray(view, np.float32)
        others = np.setdiff1d(fitted, fold)
        distances = nearest_distances(view[fold], view[rng.permutation(others)[:memory]])
        radius = max(float(np.quantile(distances, quantile)), 1e-6)
        out_of_fold[fold] = distances > radius
        memories.append(view[rng.permutation(fitted)[:memory]])
        radii.append(radius)
    return Novelty(memories, radii, quantile), out_of_fold


def novelty_from_arrays(arrays: dict[str, np.ndarray], radii: Sequence[float], quantile: float) -> Novelty:
    """The check saved as :meth:`Novelty.arrays` with its radii and quantile."""
    try:
        memories = [np.asarray(arrays[f"memory-{k}"], np.float32) for k in range(len(radii))]
    except KeyError as err:
        raise SaferlError(f"the Blocker's novelty arrays lack {err}: retrain the Blocker") from None
    if not all(np.isfinite(memory).all() for memory in memories):
        raise SaferlError("the Blocker's novelty arrays hold NaN or infinite values: retrain the Blocker")
    return Novelty(memories, [float(r) for r in radii], float(quantile))
