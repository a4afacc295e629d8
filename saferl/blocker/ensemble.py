"""Several Blockers of one game that decide together, and how to save them.

Two kinds are made: the cross-fitted Blocker of :func:`saferl.blocker.train.fit_blocker` (one member per fold of
episodes; it blocks when *any* member's logit reaches the threshold, and carries a novelty check), and the
bootstrap ensembles of the deferring overseer (:func:`train_ensemble`; the mean logit decides, and the members'
spread says where the labels did not pin the decision down: the states worth asking a person about).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

import numpy as np
import torch

from saferl.blocker.data import BlockerData, Preprocessing, Split
from saferl.blocker.io import load_blocker, save_blocker
from saferl.blocker.model import Blocker, ModelConfig, sigmoid
from saferl.blocker.novelty import Novelty, novelty_from_arrays
from saferl.blocker.threshold import zero_fn_threshold
from saferl.blocker.train import TrainConfig, example_logits, train_net
from saferl.errors import SaferlError
from saferl.files import atomic_path, load_safetensors, sha256_file, write_json

ENSEMBLE = "ensemble.json"
NOVELTY = "novelty.safetensors"
RULES = ("mean", "max")


@dataclass
class Ensemble:
    """Blockers of one game and preprocessing whose mean logit decides.

    :param members: the Blockers.
    :param threshold_logit: block when the combined logit is at least this.
    :param metadata: provenance and metrics (saved in ``ensemble.json``).
    :param rule: how member logits combine: ``mean``, or ``max`` (block when any member would).
    :param novelty: the check of states unlike the labels (None: none).
    """

    members: list[Blocker]
    threshold_logit: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    rule: str = "mean"
    novelty: Novelty | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise SaferlError("an ensemble needs at least one Blocker")
        if self.rule not in RULES:
            raise SaferlError(f"unknown ensemble rule {self.rule!r}: choose one of {', '.join(RULES)}")
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

    def combine(self, member_logits: np.ndarray) -> np.ndarray:
        """The ensemble's logits from its members' (members on the first axis), by :attr:`rule`."""
        return member_logits.max(axis=0) if self.rule == "max" else member_logits.mean(axis=0)

    def logits(self, inputs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The combined member logit of each (input, proposed action)."""
        return self.combine(self.member_logits(inputs, actions))

    def action_logits(self, inputs: np.ndarray) -> np.ndarray:
        """The combined member logit of every action (B x n_actions); one forward pass per member."""
        return self.combine(self.member_logits(inputs, None))

    def novel(self, inputs: np.ndarray) -> np.ndarray:
        """Which inputs are unlike every labelled state (all False without a novelty check)."""
        return self.assess(inputs)[1]

    def assess(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The combined block logits of every action (B x n_actions) and which inputs are novel, from one forward
        pass per member."""
        if self.novelty is None:
            return self.action_logits(inputs), np.zeros(len(inputs), bool)
        logits, views = zip(*(member.action_logits_and_features(inputs) for member in self.members))
        return self.combine(np.stack(logits)), self.novelty.novel(views)


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
    """Write the members to ``folder/member-<i>``, the novelty arrays to ``folder/novelty.safetensors`` and the
    ensemble's threshold, rule and novelty radius to ``folder/ensemble.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    names = [save_blocker(member, folder / f"member-{i}").name for i, member in enumerate(ensemble.members)]
    spec = {**ensemble.metadata, "format": "saferl-ensemble", "game": ensemble.game, "members": names,
            "rule": ensemble.rule, "threshold_logit": ensemble.threshold_logit, "threshold": ensemble.threshold}
    if ensemble.novelty is not None:
        with atomic_path(folder / NOVELTY) as tmp:
            save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ensemble.novelty.arrays().items()},
                      str(tmp))
        spec["novelty"] = {"radii": ensemble.novelty.radii, "quantile": ensemble.novelty.quantile,
                           "sha256": sha256_file(folder / NOVELTY)}
    write_json(folder / ENSEMBLE, spec)
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
        rule, novelty_spec = str(spec.get("rule", "mean")), spec.get("novelty")
        if novelty_spec is not None:
            radii, quantile = [float(r) for r in novelty_spec["radii"]], float(novelty_spec["quantile"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SaferlError(f"{path} is not a readable saferl ensemble ({err}): retrain it") from None
    if not math.isfinite(threshold):
        raise SaferlError(f"{path}: threshold_logit {threshold} is not a finite number: retrain the Blocker")
    if any(Path(name).name != name for name in names):
        raise SaferlError(f"{path} names members outside its folder: refusing to load it")
    novelty = None
    if novelty_spec is not None:
        arrays = load_safetensors(Path(folder) / NOVELTY, novelty_spec.get("sha256"), f"the Blocker in {folder}")
        novelty = novelty_from_arrays({k: v.numpy() for k, v in arrays.items()}, radii, quantile)
    metadata = {k: v for k, v in spec.items() if k not in ("format", "members", "threshold_logit", "rule", "novelty")}
    return Ensemble([load_blocker(Path(folder) / name, game) for name in names], threshold, metadata, rule, novelty)


def load_scorer(folder: str | os.PathLike[str], game: str | None = None) -> Blocker | Ensemble:
    """The Blocker or the ensemble saved in ``folder``."""
    return load_ensemble(folder, game) if is_ensemble(folder) else load_blocker(folder, game)
