"""Saving and loading Blockers: safetensors weights and JSON metadata, never pickle.

A Blocker folder holds ``blocker.safetensors`` (the weights, and nothing that can run code) and
``blocker.json`` (game, action names, preprocessing, CNN size, threshold, the label stores it was
trained on with their digests and splits, metrics, and the sha256 of the weights file). Loading
checks the metadata first, then the weights' hash, then parses them as safetensors: a file of
another kind in place of the weights (a pickle, a torch checkpoint) is refused without being run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import saferl
from saferl.blocker.data import Preprocessing
from saferl.blocker.model import Blocker, ModelConfig, new_blocker
from saferl.errors import SaferlError
from saferl.files import atomic_path, load_safetensors, read_format_json, sha256_file, write_json

WEIGHTS = "blocker.safetensors"
METADATA = "blocker.json"
FORMAT = "saferl-blocker"
FORMAT_VERSION = 1


def save_blocker(blocker: Blocker, folder: str | os.PathLike[str]) -> Path:
    """Write ``blocker`` to ``folder`` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in blocker.net.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "game": blocker.game})
    metadata = {
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
    }
    write_json(folder / METADATA, metadata)
    return folder


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of the Blocker in ``folder``; a clear error when it is missing or not a Blocker's."""
    return read_format_json(Path(folder) / METADATA, FORMAT, FORMAT_VERSION, "Blocker",
                            f"no Blocker in {folder} ({METADATA} is missing): train one with "
                            f"saferl train-blocker LABELS... --game GAME --out {folder}")


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
        trained_for = str(metadata["game"])
        saved = Preprocessing.from_dict(metadata["preprocessing"])
        config = ModelConfig.from_dict(metadata["model"])
        threshold_logit = float(metadata["threshold_logit"])
        action_names = [str(a) for a in metadata["action_names"]]
    except (KeyError, TypeError, ValueError) as err:
        raise SaferlError(f"{folder / METADATA} lacks a valid field ({err}): retrain the Blocker") from None
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
