"""Blocker datasets: labels from one or more label stores, preprocessed, split by episode.

An example is (input frames, proposed action, blocked?). The input is built by a
:class:`Preprocessing`: the paper's single RGB crop resized (the default), or the last ``stack``
grayscale frames of the same episode, each optionally shifted sideways so the player sits in the
middle column (a rule about what lies a few pixels left or right of the player is then about fixed
pixels of the input). Preprocessed frames are kept as uint8 (one per label) and
scaled to [0, 1] (pixels / 255) only when a batch is made, so 40,000 Space Invaders labels fit in
memory. Adjacent frames of one episode are nearly identical, so the train / validation / test split
is by episode, never by frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from saferl.errors import SaferlError
from saferl.games import PlayerSprite, get_game
from saferl.labels.store import LabelStore

COLORS = ("rgb", "gray")
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
DECODE_CHUNK = 512


@dataclass(frozen=True)
class Preprocessing:
    """How a label's RGB frame(s) become the Blocker's input.

    :param crop: rows [top, bottom) and columns [left, right) of the 210x160 frame to keep.
    :param size: (height, width) the crop is resized to.
    :param color: ``rgb`` (3 channels a frame) or ``gray`` (1 channel a frame).
    :param stack: how many frames of the episode make one input, the newest last.
    :param interpolation: how to resize: ``linear`` (``cv2.resize``'s default), ``area``, ``nearest``.
    :param center: shift each frame sideways (before the crop; columns shifted in are black) so this sprite's
        column becomes the frame's middle column; a frame where it does not show is left as it is.
    """

    crop: tuple[int, int, int, int]
    size: tuple[int, int]
    color: str = "rgb"
    stack: int = 1
    interpolation: str = "linear"
    center: PlayerSprite | None = None

    def __post_init__(self) -> None:
        top, bottom, left, right = self.crop
        if self.color not in COLORS:
            raise SaferlError(f"preprocessing color {self.color!r}: choose one of {', '.join(COLORS)} (--color)")
        if not (0 <= top < bottom and 0 <= left < right) or min(self.size) < 1:
            raise SaferlError(f"preprocessing crop {self.crop} / size {self.size} is empty: check the preset")
        if self.interpolation not in INTERPOLATIONS:
            raise SaferlError(f"preprocessing interpolation {self.interpolation!r}: choose one of "
                              f"{', '.join(INTERPOLATIONS)}")
        if self.stack < 1:
            raise SaferlError(f"preprocessing stack must be at least 1, not {self.stack} (--stack)")

    @property
    def channels(self) -> int:
        """Input channels: channels per frame times ``stack``."""
        return (3 if self.color == "rgb" else 1) * self.stack

    def frames(self, rgb: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Crop, resize and convert RGB frames (N x H x W x 3 uint8, or a list of H x W x 3: no stacking copy)
        to N x c x h x w uint8 (one frame each).

        The result is a view of channels-last memory (N x h x w x c): :func:`to_float` makes it torch's
        channels-last layout without a copy (3.4x faster than from N x c x h x w for 8 Pong frames, measured).
        """
        top, bottom, left, right = self.crop
        height, width = self.size
        out = np.empty((len(rgb), height, width, 3 if self.color == "rgb" else 1), np.uint8)
        for k, frame in enumerate(rgb):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < bottom or frame.shape[1] < right:
                raise SaferlError(f"frames of shape {frame.shape} do not hold the crop {self.crop}: "
                                  "this preprocessing is for another frame size")
            if self.center is not None:
                frame = centered(frame, self.center)
            image = frame[top:bottom, left:right]
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[self.interpolation])
            if self.color == "gray":
                out[k, :, :, 0] = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
            else:
                out[k] = image
        return out.transpose(0, 3, 1, 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """The preprocessing described by :meth:`to_dict` output."""
        center = data.get("center")
        sprite = None if center is None else PlayerSprite(int(center["top"]), int(center["bottom"]),
                                                          tuple(int(v) for v in center["color"]),
                                                          bool(center.get("vertical", False)))
        return cls(crop=tuple(int(v) for v in data["crop"]), size=tuple(int(v) for v in data["size"]),
                   color=str(data["color"]), stack=int(data["stack"]), interpolation=str(data["interpolation"]),
                   center=sprite)


def _shifted(frame: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """``frame`` moved ``shift`` pixels along ``axis`` (0 rows, 1 columns), black where nothing shifts in."""
    if shift == 0:
        return frame
    out = np.zeros_like(frame)
    size = frame.shape[axis]
    source = [slice(None)] * frame.ndim
    target = [slice(None)] * frame.ndim
    source[axis], target[axis] = (slice(0, size - shift), slice(shift, size)) if shift > 0 else \
        (slice(-shift, size), slice(0, size + shift))
    out[tuple(target)] = frame[tuple(source)]
    return out


def centered(frame: np.ndarray, sprite: PlayerSprite) -> np.ndarray:
    """``frame`` (H x W x 3) shifted so ``sprite``'s column is column W // 2 (and, for a ``vertical`` sprite, its
    row row H // 2), black where nothing shifts in; ``frame`` itself when the sprite does not show."""
    column = sprite.column(frame)
    if column is None:
        return frame
    out = _shifted(frame, frame.shape[1] // 2 - column, axis=1)
    if sprite.vertical:
        row = sprite.row(frame)
        out = _shifted(out, frame.shape[0] // 2 - row, axis=0)
    return out


# The paper's crops, by the screen they cut (a game's ALE env): Pong rows 34-194 resized to 105x80; Space Invaders
# and Road Runner 160x160.
_CROPS: dict[str, tuple[tuple[int, int, int, int], tuple[int, int]]] = {
    "ALE/Pong-v5": ((34, 194, 0, 160), (105, 80)),
    "ALE/SpaceInvaders-v5": ((35, 195, 0, 160), (160, 160)),
    "ALE/RoadRunner-v5": ((40, 200, 0, 160), (160, 160)),
}
_FULL_FRAME = ((0, 210, 0, 160), (105, 80))
# Games whose Blocker sees its input centred on the player by default. Space Invaders' rule turns on the few
# columns either side of the cannon: centred, a Blocker on 8,000 labels reached validation AUC 0.993 against
# 0.986 uncentred (10 epochs, 2 folds, dropout 0.1). Road Runner's on the coyote and trucks near the runner:
# centred in both directions, 8,000 labels, AUC 0.879 against 0.846 on fresh stores of other seeds (docs/history.md).
_CENTERED: frozenset[str] = frozenset({"space_invaders", "road_runner"})


def default_preprocessing(game: str, color: str = "rgb", stack: int = 1, center: bool | None = None) -> Preprocessing:
    """The paper's crop for ``game`` (the full frame at 105x80 for games it did not use).

    :param center: centre each frame on the game's player sprite (None: the game's default).
    """
    crop, size = _CROPS.get(get_game(game).env_id, _FULL_FRAME)
    if center is None:
        center = game in _CENTERED
    sprite = get_game(game).player_sprite if center else None
    if center and sprite is None:
        raise SaferlError(f"{game} does not say where its player is drawn, so its frames cannot be centred on it: "
                          "leave out --center")
    return Preprocessing(crop=crop, size=size, color=color, stack=stack, center=sprite)


def to_float(inputs: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 inputs (B x C x H x W, any strides) as a float tensor of pixels / 255 on ``device``, channels
    last (the faster conv layout on CPU: 1.4x for the Space Invaders CNN, measured)."""
    return torch.from_numpy(inputs).to(device).float().div_(255.0).contiguous(memory_format=torch.channels_last)


def history_indices(groups: np.ndarray, stack: int) -> np.ndarray:
    """For each row, the rows of the ``stack`` latest items of its group up to it (oldest first).

    Rows of a group are taken in row order; before a group's first row its first row repeats.

    :param groups: one group id (an episode) per row.
    """
    n = len(groups)
    order = np.lexsort((np.arange(n), groups))  # grouped, in row order within a group
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1]
    start_of = np.repeat(starts, np.diff(np.r_[starts, n]))
    positions = np.arange(n)
    out = np.empty((n, stack), np.int64)
    for j in range(stack):
        back = stack - 1 - j
        out[order, j] = order[np.maximum(positions - back, start_of)]
    return out


@dataclass(frozen=True)
class StoreInfo:
    """Where a dataset's labels came from (training-data provenance)."""

    path: str
    digest: str
    labels: int
    blocks: int


@dataclass
class BlockerData:
    """Labelled examples for a Blocker.

    :param frames: one preprocessed frame per label (N x c x h x w uint8).
    :param actions: the proposed actions (N).
    :param blocked: the overseer's decisions (N), relabels applied.
    :param catastrophe: the game's ground truth for the step (N).
    :param store: which of ``sources`` each label comes from (N).
    :param store_episode: each label's episode id in its store (N).
    :param episodes: a dataset-wide episode id (N): (store, store_episode) numbered from 0.
    :param history: the rows of ``frames`` that make each example's input (N x stack, oldest first).
    """

    game: str
    action_names: list[str]
    preprocessing: Preprocessing
    frames: np.ndarray
    actions: np.ndarray
    blocked: np.ndarray
    catastrophe: np.ndarray
    store: np.ndarray
    store_episode: np.ndarray
    episodes: np.ndarray
    history: np.ndarray
    sources: list[StoreInfo] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)

    def inputs(self, indices: np.ndarray) -> np.ndarray:
        """The uint8 inputs of examples ``indices`` (B x channels x h x w)."""
        stacked = self.frames[self.history[indices]]  # B x stack x c x h x w
        return stacked.reshape(len(indices), -1, *stacked.shape[-2:])


def decoded_inputs(store: LabelStore, preprocessing: Preprocessing) -> Iterator[np.ndarray]:
    """The store's frames through ``preprocessing`` (uint8, N x c x h x w), decoded ``DECODE_CHUNK`` at a time."""
    for start in range(0, len(store), DECODE_CHUNK):
        yield preprocessing.frames(store.frames(range(start, min(start + DECODE_CHUNK, len(store)))))


def load_labels(paths: Sequence[str | os.PathLike[str]], game: str | None = None,
                preprocessing: Preprocessing | None = None) -> BlockerData:
    """The labels of the stores at ``paths`` as a :class:`BlockerData`.

    :param game: every store must hold this game (default: the first store's game).
    :param preprocessing: default :func:`default_preprocessing` of the game.
    """
    if not paths:
        raise SaferlError("no label stores given: pass one or more LABELS folders (saferl oversee --out DIR)")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("frames", "actions", "blocked", "catastrophe", "store",
                                                            "store_episode")}
    sources: list[StoreInfo] = []
    action_names: list[str] | None = None
    for k, path in enumerate(paths):
        with LabelStore.open(path, game) as store:
            game = store.game
            if action_names is None:
                action_names = store.action_names
                preprocessing = preprocessing or default_preprocessing(game)
            elif store.action_names != action_names:
                raise SaferlError(f"{store.file} has actions {store.action_names}, but {paths[0]} has "
                                  f"{action_names}: train one Blocker per action set")
            if not len(store):
                raise SaferlError(f"{store.file} holds no labels: record some with saferl oversee --out {path}")
            a = store.arrays()
            parts["frames"] += list(decoded_inputs(store, preprocessing))
            parts["actions"].append(a["proposed_action"])
            parts["blocked"].append(a["blocked"])
            parts["catastrophe"].append(a["catastrophe"])
            parts["store"].append(np.full(len(store), k, np.int64))
            parts["store_episode"].append(a["episode"])
            sources.append(StoreInfo(str(Path(path).resolve()), store.digest(), len(store), int(a["blocked"].sum())))
    joined = {name: np.concatenate(arrays) for name, arrays in parts.items()}
    pairs = joined["store"] * (int(joined["store_episode"].max()) + 1) + joined["store_episode"]
    episodes = np.unique(pairs, return_inverse=True)[1].astype(np.int64)
    return BlockerData(game=game, action_names=list(action_names), preprocessing=preprocessing,
                       history=history_indices(episodes, preprocessing.stack), episodes=episodes,
                       sources=sources, **joined)


@dataclass(frozen=True)
class Split:
    """Example indices of the train, validation and test episodes."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def episodes(self, data: BlockerData) -> dict[str, list[int]]:
        """The dataset-wide episode ids in each part."""
        return {name: np.unique(data.episodes[getattr(self, name)]).tolist() for name in ("train", "val", "test")}


def split_by_episode(data: BlockerData, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                     seed: int = 0) -> Split:
    """Split ``data`` into train / validation / test by whole episodes.

    Episodes with blocks and those without are shuffled (seeded) and shared out separately in the
    proportions ``fractions``, so validation and test both hold blocks (the zero-false-negative
    threshold needs them) and each part gets at least one episode with blocks.
    """
    if len(fractions) != 3 or min(fractions) <= 0:
        raise SaferlError(f"split fractions {fractions}: give three positive numbers (train, val, test)")
    rng = np.random.default_rng(seed)
    episodes = np.unique(data.episodes)
    with_blocks = np.unique(data.episodes[data.blocked])
    if len(with_blocks) < 3:
        raise SaferlError(f"the labels hold blocks in {len(with_blocks)} episode(s) of {len(episodes)}; a split by "
                          "episode needs blocks in at least 3: record more episodes (saferl oversee --steps)")
    owner = np.empty(int(episodes.max()) + 1, np.int64)
    for group in (with_blocks, np.setdiff1d(episodes, with_blocks)):
        group = rng.permutation(group)
        n = len(group)
        n_val = max(1, round(fractions[1] / sum(fractions) * n)) if n >= 3 else int(n >= 2)
        n_test = max(1, round(fractions[2] / sum(fractions) * n)) if n >= 3 else 0
        n_train = n - n_val - n_test
        owner[group[:n_train]] = 0
        owner[group[n_train:n_train + n_val]] = 1
        owner[group[n_train + n_val:]] = 2
    part = owner[data.episodes]
    return Split(*(np.flatnonzero(part == k) for k in range(3)))


@dataclass(frozen=True)
class Folds:
    """Example indices of K folds of whole episodes (each fold validates the Blocker trained on the others) and
    of the test episodes that no fold holds."""

    folds: list[np.ndarray]
    test: np.ndarray

    @property
    def fitted(self) -> np.ndarray:
        """The examples of every fold, sorted."""
        return np.sort(np.concatenate(self.folds))

    def parts(self) -> dict[str, np.ndarray]:
        """Examples per part as a Blocker's training record names them: every fitted episode trained the
        members of the other folds and validated its own (``train`` and ``val`` alike), ``test`` none."""
        return {"train": self.fitted, "val": self.fitted, "test": self.test}


def fold_by_episode(data: BlockerData, k: int = 3, test_fraction: float = 0.2, seed: int = 0) -> Folds:
    """Deal ``data``'s episodes into ``k`` folds and a test part, whole episodes each.

    Episodes with blocks and those without are shuffled (seeded) and dealt separately: ``test_fraction`` of each
    (at least one episode with blocks) to the test part, the rest round-robin into the folds, so every fold and the
    test part hold blocks.
    """
    if k < 2:
        raise SaferlError(f"--folds must be at least 2 (each fold validates the others' Blocker), not {k}")
    if not 0.0 < test_fraction < 1.0:
        raise SaferlError(f"the test fraction must lie in (0, 1), not {test_fraction}")
    rng = np.random.default_rng(seed)
    episodes = np.unique(data.episodes)
    with_blocks = np.unique(data.episodes[data.blocked])
    if len(with_blocks) < k + 1:
        raise SaferlError(f"the labels hold blocks in {len(with_blocks)} episode(s) of {len(episodes)}; {k} folds and "
                          f"a test part need blocks in at least {k + 1}: record more episodes (saferl oversee --steps, "
                          "or saferl experiment --oversight-steps), or lower --folds")
    owner = np.empty(int(episodes.max()) + 1, np.int64)
    for group, at_least in ((with_blocks, 1), (np.setdiff1d(episodes, with_blocks), 0)):
        group = rng.permutation(group)
        n_test = max(at_least, round(test_fraction * len(group))) if len(group) > k else 0
        owner[group[:n_test]] = k
        owner[group[n_test:]] = np.arange(len(group) - n_test) % k
    part = owner[data.episodes]
    return Folds([np.flatnonzero(part == fold) for fold in range(k)], np.flatnonzero(part == k))
