"""Several Blockers of one game that decide together, and how to save them.

Two kinds are made: the cross-fitted Blocker of :func:`saferl.blocker.train.fit_blocker` (one member per fold of
episodes; it blocks when *any* member's logit reaches the threshold, and carries a novelty check), and the
bootstrap ensembles of the deferring overseer (:func:`train_ensemble`; the mean logit decides, and the members'
spread says where the labels did not pin the decision down: the states worth asking a person about).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, StringConstraints, field_validator, model_validator

from saferl.blocker.data import BlockerData, Preprocessing, Split, to_float
from saferl.blocker.fused import FusedNets
from saferl.blocker.io import FORMAT_VERSION, Logit, Sha256, known_game, load_blocker, read_metadata, save_blocker
from saferl.blocker.model import SMALL_BATCH, Blocker, ModelConfig, one_thread_if, sigmoid
from saferl.blocker.novelty import Novelty, novelty_from_arrays
from saferl.blocker.threshold import zero_fn_threshold
from saferl.blocker.train import TrainConfig, example_logits, train_net
from saferl.errors import SaferlError
from saferl.files import (
    atomic_path,
    check_digest,
    load_safetensors,
    read_format_json,
    sha256_file,
    with_digest,
    write_json,
)
from saferl.schema import Strict, validate

ENSEMBLE = "ensemble.json"
NOVELTY = "novelty.safetensors"
FORMAT = "saferl-ensemble"
RULES = ("mean", "max")
MAX_MEMBERS = 32


class NoveltyRecord(Strict):
    """The novelty check's fields of ``ensemble.json``."""

    radii: list[Annotated[float, Field(gt=0.0, le=1e6)]] = Field(min_length=1, max_length=MAX_MEMBERS)
    quantile: float = Field(gt=0.0, le=1.0)
    sha256: Sha256


class EnsembleRecord(Strict):
    """What ``ensemble.json`` must hold before its members are loaded."""

    game: str
    members: list[Annotated[str, StringConstraints(pattern=r"^member-[0-9]{1,3}$")]] = Field(
        min_length=1, max_length=MAX_MEMBERS)
    member_digests: list[Sha256]
    rule: Literal[RULES]  # type: ignore[valid-type]
    threshold_logit: Logit
    novelty: NoveltyRecord | None = None

    _game = field_validator("game")(known_game)

    @model_validator(mode="after")
    def _one_digest_and_radius_per_member(self) -> EnsembleRecord:
        if len(self.member_digests) != len(self.members):
            raise ValueError(f"{len(self.member_digests)} member digests for {len(self.members)} members")
        if self.novelty is not None and len(self.novelty.radii) != len(self.members):
            raise ValueError(f"{len(self.novelty.radii)} novelty radii for {len(self.members)} members")
        return self


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
    _fused: FusedNets | None = field(default=None, init=False, repr=False, compare=False)

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
            return self._member_passes(inputs)[0]
        return np.stack([member.logits(inputs, actions) for member in self.members])

    def _member_passes(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each member's block logits of every action (K x B x n_actions) and its views (K x B x units): a batch of
        a review's size in one fused pass (:mod:`saferl.blocker.fused`), a larger one member by member."""
        nets = [member.net for member in self.members]
        if len(inputs) <= SMALL_BATCH and len(nets) > 1:
            if self._fused is None or not self._fused.fits(nets):
                self._fused = FusedNets.fuse(nets)
            if self._fused is not None:
                device = self.members[0].device
                with torch.inference_mode(), one_thread_if(device.type == "cpu"):
                    logits, views = self._fused(to_float(inputs, device))
                return logits.double().cpu().numpy(), views.double().cpu().numpy()
        logits, views = zip(*(member.action_logits_and_features(inputs) for member in self.members))
        return np.stack(logits), np.stack(views)

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
        logits, views = self._member_passes(inputs)
        return self.combine(logits), np.zeros(len(inputs), bool) if self.novelty is None else self.novelty.novel(views)


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
    spec = {**ensemble.metadata, "format": FORMAT, "format_version": FORMAT_VERSION, "game": ensemble.game,
            "members": names, "member_digests": [read_metadata(folder / name)["digest"] for name in names],
            "rule": ensemble.rule, "threshold_logit": ensemble.threshold_logit, "threshold": ensemble.threshold}
    if ensemble.novelty is not None:
        with atomic_path(folder / NOVELTY) as tmp:
            save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ensemble.novelty.arrays().items()},
                      str(tmp))
        spec["novelty"] = {"radii": ensemble.novelty.radii, "quantile": ensemble.novelty.quantile,
                           "sha256": sha256_file(folder / NOVELTY)}
    write_json(folder / ENSEMBLE, with_digest(spec))
    return folder


def is_ensemble(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved ensemble (rather than a single Blocker)."""
    return (Path(folder) / ENSEMBLE).is_file()


def load_ensemble(folder: str | os.PathLike[str], game: str | None = None) -> Ensemble:
    """The ensemble saved in ``folder``: ``ensemble.json`` checked against its digest and :class:`EnsembleRecord`,
    each member loaded as safely as :func:`load_blocker` and matched to the digest the ensemble recorded for it."""
    folder = Path(folder)
    path, fix = folder / ENSEMBLE, "restore the Blocker folder or retrain it"
    spec = read_format_json(path, FORMAT, FORMAT_VERSION, "Blocker ensemble", f"{path} is missing")
    check_digest(spec, path, fix)
    record = validate(EnsembleRecord, spec, str(path), fix)
    for name, digest in zip(record.members, record.member_digests):
        if read_metadata(folder / name).get("digest") != digest:
            raise SaferlError(f"{folder / name} is not the member {path} was saved with (its digest differs): "
                              f"it was replaced; {fix}")
    novelty = None
    if record.novelty is not None:
        arrays = load_safetensors(folder / NOVELTY, record.novelty.sha256, f"the Blocker in {folder}")
        novelty = novelty_from_arrays({k: v.numpy() for k, v in arrays.items()}, list(record.novelty.radii),
                                      record.novelty.quantile)
    skipped = ("format", "format_version", "members", "member_digests", "threshold_logit", "rule", "novelty", "digest")
    metadata = {k: v for k, v in spec.items() if k not in skipped}
    return Ensemble([load_blocker(folder / name, game) for name in record.members], record.threshold_logit, metadata,
                    record.rule, novelty)


def load_scorer(folder: str | os.PathLike[str], game: str | None = None) -> Blocker | Ensemble:
    """The Blocker or the ensemble saved in ``folder``."""
    return load_ensemble(folder, game) if is_ensemble(folder) else load_blocker(folder, game)
