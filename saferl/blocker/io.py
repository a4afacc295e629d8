"""Saving and loading Blockers: safetensors weights and JSON metadata, never pickle.

A Blocker folder holds ``blocker.safetensors`` (the weights, and nothing that can run code) and
``blocker.json`` (game, action names, preprocessing, CNN size, threshold, the label stores it was
trained on with their digests and splits, metrics, the sha256 of the weights file, and a digest of all
of these). Loading checks the metadata first (its digest, then every decisive field against
:class:`BlockerRecord`: a known game, finite numbers, sizes in bounds), then the weights' hash, then parses
them as safetensors and refuses NaN or infinite weights: a file of another kind in place of the weights (a
pickle, a torch checkpoint) is refused without being run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, StringConstraints, field_validator
from safetensors.torch import save_file

import saferl
from saferl.blocker.data import INTERPOLATIONS, Preprocessing
from saferl.blocker.model import Blocker, ModelConfig, new_blocker
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

WEIGHTS = "blocker.safetensors"
METADATA = "blocker.json"
FORMAT = "saferl-blocker"
FORMAT_VERSION = 2
MAX_LOGIT = 1e4  # a block logit beyond this saturates float32's sigmoid many times over: not a trained threshold

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Logit = Annotated[float, Field(ge=-MAX_LOGIT, le=MAX_LOGIT)]


def known_game(name: str) -> str:
    """``name`` when it is a registered game."""
    from saferl.games import GAMES

    if name not in GAMES:
        raise ValueError(f"not a game saferl knows ({', '.join(GAMES)})")
    return name


class SpriteRecord(Strict):
    """A sprite to centre on (:class:`~saferl.games.PlayerSprite`)."""

    top: int = Field(ge=0, le=1024)
    bottom: int = Field(ge=1, le=1024)
    color: list[Annotated[int, Field(ge=0, le=255)]] = Field(min_length=3, max_length=3)
    vertical: bool = False


class PreprocessingRecord(Strict):
    """The preprocessing fields of a Blocker's metadata (:class:`~saferl.blocker.data.Preprocessing`)."""

    crop: list[Annotated[int, Field(ge=0, le=1024)]] = Field(min_length=4, max_length=4)
    size: list[Annotated[int, Field(ge=1, le=1024)]] = Field(min_length=2, max_length=2)
    color: Literal["rgb", "gray"]
    stack: int = Field(ge=1, le=32)
    interpolation: Literal[tuple(INTERPOLATIONS)]  # type: ignore[valid-type]
    center: SpriteRecord | None = None


class ModelRecord(Strict):
    """The CNN size fields of a Blocker's metadata (:class:`~saferl.blocker.model.ModelConfig`)."""

    convs: int = Field(ge=0, le=10)
    filters: int = Field(ge=1, le=512)
    fc: list[Annotated[int, Field(ge=1, le=4096)]] = Field(min_length=1, max_length=8)
    dropout: float = Field(ge=0.0, lt=1.0)


class BlockerRecord(Strict):
    """What ``blocker.json`` must hold before its weights are loaded."""

    game: Name
    action_names: list[Name] = Field(min_length=2, max_length=18)
    preprocessing: PreprocessingRecord
    model: ModelRecord
    threshold_logit: Logit
    weights_sha256: Sha256

    _game = field_validator("game")(known_game)


def save_blocker(blocker: Blocker, folder: str | os.PathLike[str]) -> Path:
    """Write ``blocker`` to ``folder`` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in blocker.net.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "game": blocker.game})
    metadata = with_digest({
        **blocker.metadata,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "saferl_version": saferl.__version__,
        "game": blocker.game,
        "action_names": blocker.action_names,
        "preprocessing": blocker.preprocessing.to_dict(),
        "model": blocker.model_config.to_dict(),
        "threshold": blocker.threshold,
        "threshold_logit": blocker.threshold_logit,
        "weights_sha256": sha256_file(weights),
    })
    write_json(folder / METADATA, metadata)
    return folder


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of the Blocker in ``folder``, checked against its digest and :class:`BlockerRecord`;
    a clear error when it is missing, not a Blocker's, edited or out of bounds."""
    path = Path(folder) / METADATA
    metadata = read_format_json(path, FORMAT, FORMAT_VERSION, "Blocker",
                                f"no Blocker in {folder} ({METADATA} is missing): train one with "
                                f"saferl train-blocker LABELS... --game GAME --out {folder}")
    check_digest(metadata, path, "restore the Blocker folder or retrain it")
    validate(BlockerRecord, metadata, str(path), "restore the Blocker folder or retrain it")
    return metadata


def load_blocker(folder: str | os.PathLike[str], game: str | None = None,
                 preprocessing: Preprocessing | None = None, device: str | torch.device = "cpu") -> Blocker:
    """The Blocker saved in ``folder``.

    :param game: refuse a Blocker trained for another game.
    :param preprocessing: refuse a Blocker that expects other inputs.
    """
    folder = Path(folder)
    metadata = read_metadata(folder)
    trained_for = metadata.get("game")
    if game is not None and trained_for != game:
        raise SaferlError(f"{folder / METADATA} is a Blocker for {trained_for!r}, not {game!r}: train one for {game} "
                          f"(saferl train-blocker LABELS... --game {game}) or pass --game {trained_for}")
    try:
        saved = Preprocessing.from_dict(metadata["preprocessing"])
        config = ModelConfig.from_dict(metadata["model"])
    except SaferlError as err:
        raise SaferlError(f"{folder / METADATA}: {err}; restore the Blocker folder or retrain it") from None
    threshold_logit, action_names = float(metadata["threshold_logit"]), list(metadata["action_names"])
    if preprocessing is not None and saved != preprocessing:
        raise SaferlError(f"{folder / METADATA} expects preprocessing {saved.to_dict()}, not "
                          f"{preprocessing.to_dict()}: use a Blocker trained with that preprocessing")
    weights = folder / WEIGHTS
    state = load_safetensors(weights, metadata.get("weights_sha256"), f"the Blocker in {folder}")
    blocker = new_blocker(trained_for, action_names, saved, config)
    try:
        blocker.net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SaferlError(f"{weights} does not fit the CNN in {METADATA} ({err}); retrain the Blocker") from None
    blocker.net.to(device)
    blocker.threshold_logit = threshold_logit
    blocker.metadata = metadata
    return blocker
