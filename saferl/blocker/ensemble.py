"""K Blockers trained on bootstrap samples of the training episodes' labels, and how much they disagree.

The ensemble's block logit is the mean of its members' logits, thresholded like a single Blocker
(zero false negatives on the validation episodes). Its disagreement score, the standard deviation
of the members' block probabilities, is high where the labels did not pin the decision down: the
states worth asking a human about (active learning, PAPER.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

import numpy as np

from saferl.blocker.data import BlockerData, Preprocessing, Split
from saferl.blocker.io import load_blocker, save_blocker
from saferl.blocker.model import Blocker, ModelConfig, sigmoid
from saferl.blocker.threshold import zero_fn_threshold
from saferl.blocker.train import TrainConfig, example_logits, train_net
from saferl.errors import SaferlError
from saferl.files import write_json

ENSEMBLE = "ensemble.json"


@dataclass
class Ensemble:
    """Blockers of one game and preprocessing whose mean logit decides.

    :param members: the Blockers.
    :param threshold_logit: block when the mean logit is at least this.
    :param metadata: provenance and metrics (saved in ``ensemble.json``).
    """

    members: list[Blocker]
    threshold_logit: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.members:
            raise SaferlError("an ensemble needs at least one Blocker")
        first = self.members[0]
        for member in self.members[1:]:
            if (member.game, member.action_names, member.preprocessing) != (first.game, first.action_names,
                                                                            first.preprocessing):
                raise SaferlError("the ensemble's Blockers differ in game, actions or preprocessing")

    @property
    def game(self) -> str:
        return self.members[0].game

    @property
    def preprocessing(self) -> Preprocessing:
        return self.members[0].preprocessing

    @property
    def action_names(self) -> list[str]:
        return self.members[0].action_names

    @property
    def threshold(self) -> float:
        """The block threshold as a probability (of the mean logit)."""
        return float(sigmoid(self.threshold_logit))

    def member_logits(self, inputs: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        """Each member's block logits: K x B (with ``actions``) or K x B x n_actions (``actions`` None)."""
        if actions is None:
            return np.stack([member.action_logits(inputs) for member in self.members])
        return np.stack([member.logits(inputs, actions) for member in self.members])

    def logits(self, inputs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The mean member logit of each (input, proposed action)."""
        return self.member_logits(inputs, actions).mean(axis=0)

    def action_logits(self, inputs: np.ndarray) -> np.ndarray:
        """The mean member logit of every action (B x n_actions); one forward pass per member."""
        return self.member_logits(inputs, None).mean(axis=0)

    def disagreement(self, inputs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The standard deviation of the members' block probabilities (0: all agree; at most 0.5)."""
        return sigmoid(self.member_logits(inputs, actions)).std(axis=0)


def train_ensemble(data: BlockerData, split: Split, k: int = 5, model_config: ModelConfig | None = None,
                   config: TrainConfig = TrainConfig(), margin: float = 0.0) -> Ensemble:
    """``k`` Blockers, each trained on a bootstrap sample (drawn with replacement) of the training
    examples with its own seed, thresholded together on the validation examples."""
    if k < 1:
        raise SaferlError(f"an ensemble needs k >= 1 members, not {k}")
    rng = np.random.default_rng(config.seed)
    members = []
    for i in range(k):
        sample = rng.choice(split.train, size=len(split.train), replace=True)
        members.append(train_net(data, sample, split.val, model_config, replace(config, seed=config.seed + i)).blocker)
    ensemble = Ensemble(members)
    for scorer in (*members, ensemble):
        scorer.threshold_logit = zero_fn_threshold(example_logits(scorer, data, split.val), data.blocked[split.val],
                                                   margin)
    return ensemble


def save_ensemble(ensemble: Ensemble, folder: str | os.PathLike[str]) -> Path:
    """Write the members to ``folder/member-<i>`` and the ensemble's threshold to ``folder/ensemble.json``."""
    folder = Path(folder)
    names = [save_blocker(member, folder / f"member-{i}").name for i, member in enumerate(ensemble.members)]
    write_json(folder / ENSEMBLE, {**ensemble.metadata, "format": "saferl-ensemble", "game": ensemble.game,
                                   "members": names, "threshold_logit": ensemble.threshold_logit,
                                   "threshold": ensemble.threshold})
    return folder


def is_ensemble(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved ensemble (rather than a single Blocker)."""
    return (Path(folder) / ENSEMBLE).is_file()


def load_ensemble(folder: str | os.PathLike[str], game: str | None = None) -> Ensemble:
    """The ensemble saved in ``folder`` (each member loaded as safely as :func:`load_blocker`)."""
    path = Path(folder) / ENSEMBLE
    try:
        spec = json.loads(path.read_text())
        names, threshold = [str(name) for name in spec["members"]], float(spec["threshold_logit"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SaferlError(f"{path} is not a readable saferl ensemble ({err}): retrain it") from None
    if any(Path(name).name != name for name in names):
        raise SaferlError(f"{path} names members outside its folder: refusing to load it")
    metadata = {k: v for k, v in spec.items() if k not in ("format", "members", "threshold_logit")}
    return Ensemble([load_blocker(Path(folder) / name, game) for name in names], threshold, metadata)


def load_scorer(folder: str | os.PathLike[str], game: str | None = None) -> Blocker | Ensemble:
    """The Blocker or the ensemble saved in ``folder``."""
    return load_ensemble(folder, game) if is_ensemble(folder) else load_blocker(folder, game)
