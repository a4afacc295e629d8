"""The Blocker's CNN (the paper's architecture, sized per game) and the deployed Blocker.

:class:`BlockerNet`: 3x3 stride-2 convolutions with ELU and dropout, flattened, the proposed
action's one-hot concatenated, fully connected ELU layers with dropout, one logit (block when
high). :class:`Blocker` bundles a net with what using it needs: the game, its action names, the
preprocessing and the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch import nn

from saferl.blocker.data import Preprocessing, default_preprocessing, to_float
from saferl.errors import SaferlError

INFERENCE_BATCH = 1024
SMALL_BATCH = 64  # inputs per call up to which inference runs on one CPU thread


@dataclass(frozen=True)
class ModelConfig:
    """The CNN's size.

    :param convs: how many 3x3 stride-2 convolutions.
    :param filters: filters per convolution.
    :param fc: widths of the fully connected layers after the action is concatenated.
    :param dropout: dropout probability after every hidden layer (training only).
    """

    convs: int = 2
    filters: int = 4
    fc: tuple[int, ...] = (10, 10)
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.convs < 0 or self.filters < 1 or min(self.fc, default=1) < 1 or not 0.0 <= self.dropout < 1.0:
            raise SaferlError(f"bad Blocker CNN size {self}: convs >= 0, filters and fc widths >= 1, "
                              "dropout in [0, 1) (--dropout)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``fc`` a list, as JSON reads it back)."""
        return {**asdict(self), "fc": list(self.fc)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The config described by :meth:`to_dict` output."""
        return cls(convs=int(data["convs"]), filters=int(data["filters"]), fc=tuple(int(v) for v in data["fc"]),
                   dropout=float(data["dropout"]))


# The paper's sizes: Pong 2 convs x 4 filters, FC [10, 10]; Space Invaders and Road Runner 6 x 16, FC [20, 20].
_SMALL = ModelConfig(convs=2, filters=4, fc=(10, 10))
# Space Invaders' and Road Runner's rules are exact to a few pixels, which dropout 0.5 after every convolution blurs.
# Space Invaders, 8,000 labels: validation AUC 0.993 at dropout 0.1 against 0.990 at 0.5 (10 epochs, 2 folds,
# centred inputs). Road Runner, 8,000 labels of random play (8 epochs, 2 folds, centred): on fresh stores of other
# seeds AUC 0.936 against 0.879, and FPR letting 1% / 5% of the blocks through 54% / 28% against 61% / 48%.
_PRECISE = ModelConfig(convs=6, filters=16, fc=(20, 20), dropout=0.1)


def default_model_config(game: str) -> ModelConfig:
    """The paper's CNN size for ``game`` (the larger one for games other than Pong), with less dropout for Space
    Invaders and Road Runner."""
    from saferl.games import get_game

    return _SMALL if get_game(game).env_id == "ALE/Pong-v5" else _PRECISE


class BlockerNet(nn.Module):
    """The Blocker CNN: ``forward(x, actions)`` gives one block logit per example.

    :param in_channels: input channels (see :attr:`Preprocessing.channels`).
    :param height: input height.
    :param width: input width.
    :param n_actions: the size of the action one-hot.
    """

    def __init__(self, in_channels: int, height: int, width: int, n_actions: int, config: ModelConfig) -> None:
        super().__init__()
        self.n_actions = n_actions
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(config.convs):
            conv = nn.Conv2d(channels, config.filters, 3, stride=2, padding=1)
            layers += [conv, nn.ELU(), nn.Dropout(config.dropout)]
            channels = config.filters
            height, width = (height + 1) // 2, (width + 1) // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        head: list[nn.Module] = []
        features = channels * height * width + n_actions
        for units in config.fc:
            head += [nn.Linear(features, units), nn.ELU(), nn.Dropout(config.dropout)]
            features = units
        self.head = nn.Sequential(*head, nn.Linear(features, 1))

    def forward(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Block logits (B) of inputs ``x`` (B x C x H x W, in [0, 1]) with proposed ``actions`` (B)."""
        one_hot = nn.functional.one_hot(actions.long(), self.n_actions).to(x.dtype)
        return self.head(torch.cat([self.trunk(x), one_hot], dim=1)).squeeze(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The net's view of each input before the action joins (B x units): the features' share of the first
        fully connected layer, before its activation. Where the labels never led, this view lies far from theirs
        (:mod:`saferl.blocker.novelty`)."""
        first = self.head[0]
        n_features = first.in_features - self.n_actions
        return nn.functional.linear(self.trunk(x), first.weight[:, :n_features], first.bias)

    def all_actions(self, x: torch.Tensor) -> torch.Tensor:
        """Block logits of every action (B x n_actions): the convolutions and the features' share of the
        first fully connected layer run once per input; each action adds its one-hot's column."""
        return self.all_actions_and_features(x)[:, :self.n_actions]

    def all_actions_and_features(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`all_actions` and :meth:`features` side by side (B x (n_actions + units)), from one pass."""
        first = self.head[0]
        features = self.features(x)
        hidden = features.unsqueeze(1) + first.weight[:, first.in_features - self.n_actions:].T  # B x actions x units
        for layer in islice(self.head, 1, None):  # (slicing a Sequential builds a new one: 25 us a call)
            hidden = layer(hidden)
        return torch.cat([hidden.view(len(x), self.n_actions), features], dim=1)


@contextmanager
def one_thread_if(condition: bool) -> Iterator[None]:
    """Run torch on one CPU thread inside, when ``condition``: a small batch gains nothing from more, and
    on a busy machine their waiting for each other made one review of 8 frames 10-20 times slower (measured)."""
    threads = torch.get_num_threads()
    if condition and threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def sigmoid(logits: np.ndarray | float) -> np.ndarray:
    """Block probabilities of logits (float64, without overflow warnings)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, np.float64)))


@dataclass
class Blocker:
    """A trained Blocker: blocks a proposed action when its logit reaches ``threshold_logit``.

    :param net: the CNN.
    :param game: the game it was trained for.
    :param action_names: the game's actions, in the order of the one-hot.
    :param preprocessing: how frames become its input.
    :param model_config: the CNN's size.
    :param threshold_logit: block when the logit is at least this (probability: :attr:`threshold`).
    :param metadata: provenance and metrics (saved beside the weights).
    """

    net: BlockerNet
    game: str
    action_names: list[str]
    preprocessing: Preprocessing
    model_config: ModelConfig
    threshold_logit: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """The block threshold as a probability."""
        return float(sigmoid(self.threshold_logit))

    @property
    def device(self) -> torch.device:
        """Where the net's weights live."""
        return next(self.net.parameters()).device

    def logits(self, inputs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Block logits (float64) of uint8 ``inputs`` (B x C x H x W) with proposed ``actions``."""
        return self._infer(inputs, lambda x, k: self.net(x, torch.as_tensor(actions[k], device=x.device)))

    def action_logits(self, inputs: np.ndarray) -> np.ndarray:
        """Block logits (float64, B x n_actions) of every action, in one forward pass per 1,024 inputs."""
        return self._infer(inputs, lambda x, k: self.net.all_actions(x))

    def action_logits_and_features(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`action_logits` and the net's :meth:`~BlockerNet.features` of each input, from one pass."""
        n_actions = len(self.action_names)
        if not len(inputs):
            return np.empty((0, n_actions)), np.empty((0, self.net.head[0].out_features))
        both = self._infer(inputs, lambda x, k: self.net.all_actions_and_features(x))
        return both[:, :n_actions], both[:, n_actions:]

    def features(self, inputs: np.ndarray) -> np.ndarray:
        """The net's view of each input (B x units, see :meth:`BlockerNet.features`)."""
        return self._infer(inputs, lambda x, k: self.net.features(x))

    def assess(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block logits of every action (B x n_actions) and which inputs are novel (a single Blocker keeps no
        novelty check: none are)."""
        return self.action_logits(inputs), np.zeros(len(inputs), bool)

    def _infer(self, inputs: np.ndarray, run: Callable[[torch.Tensor, slice], torch.Tensor]) -> np.ndarray:
        """``run`` (float inputs, their slice of ``inputs``) over chunks of ``inputs``, in eval mode, as float64."""
        if self.net.training:  # eval() walks every module: about 0.1 ms, a few percent of a review of 8 frames
            self.net.eval()
        out = []
        with torch.inference_mode(), one_thread_if(len(inputs) <= SMALL_BATCH and self.device.type == "cpu"):
            for start in range(0, len(inputs), INFERENCE_BATCH):
                k = slice(start, start + INFERENCE_BATCH)
                out.append(run(to_float(inputs[k], self.device), k).double().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0)


def new_blocker(game: str, action_names: list[str], preprocessing: Preprocessing | None = None,
                model_config: ModelConfig | None = None, seed: int | None = None) -> Blocker:
    """An untrained Blocker for ``game`` with the paper's defaults (threshold: probability 0.5)."""
    preprocessing = preprocessing or default_preprocessing(game)
    model_config = model_config or default_model_config(game)
    if not action_names:
        raise SaferlError(f"a Blocker for {game} needs the game's action names")
    if seed is not None:
        torch.manual_seed(seed)
    height, width = preprocessing.size
    net = BlockerNet(preprocessing.channels, height, width, len(action_names), model_config)
    net.to(memory_format=torch.channels_last)
    return Blocker(net, game, list(action_names), preprocessing, model_config)
