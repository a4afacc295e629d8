"""A3C on disk: the weights and optimizer state as safetensors, ``a3c.json`` beside them, and the record that
``a3c.json`` must match before anything it names is loaded. Nothing saved can run code when loaded."""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import torch
from pydantic import Field, create_model

from saferl.agents.a3c.config import A3CConfig
from saferl.agents.a3c.network import ActorCritic
from saferl.agents.a3c.optimizer import SharedAdam
from saferl.errors import SaferlError
from saferl.files import atomic_path, load_safetensors, read_format_json, sha256_file, write_json
from saferl.schema import Strict, validate

WEIGHTS = "a3c.safetensors"
METADATA = "a3c.json"
FORMAT = "saferl-a3c"
FORMAT_VERSION = 1

#: ``a3c.json``'s ``config``: each field of :class:`A3CConfig` with its type (its ranges are the dataclass's check).
A3CConfigRecord = create_model("A3CConfigRecord", __base__=Strict,
                               **{f.name: (get_type_hints(A3CConfig)[f.name], f.default) for f in fields(A3CConfig)})


class A3CRecord(Strict):
    """What ``a3c.json`` must hold before its weights are loaded (format and version are checked first)."""

    config: A3CConfigRecord  # type: ignore[valid-type]
    num_timesteps: int = Field(ge=0)
    obs_shape: list[Annotated[int, Field(ge=1, le=4096)]] = Field(min_length=3, max_length=3)
    n_actions: int = Field(ge=1, le=1024)
    safety_totals: dict[str, float] = Field(default_factory=dict)
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, metadata): ``path/a3c.safetensors`` and ``path/a3c.json`` for a folder; for a file
    ``x.safetensors``, that file and ``x.json`` beside it."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    return path / WEIGHTS, path / METADATA


def save_a3c(path: str | os.PathLike[str], config: A3CConfig, model: ActorCritic, optimizer: SharedAdam,
             num_timesteps: int, safety_totals: dict[str, float], episodes: int) -> None:
    """Write the model, the optimizer state and JSON metadata (config, num_timesteps, obs shape, n_actions,
    safety totals, the weights' sha256) to ``path`` (see :func:`checkpoint_paths`)."""
    from safetensors.torch import save_file

    weights, metadata_path = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{name}": value for name, value in model.state_dict().items()}
    tensors.update({f"optimizer.{name}": value for name, value in optimizer.state_dict().items()})
    tensors = {name: value.detach().cpu().clone().contiguous() for name, value in tensors.items()}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    import saferl

    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "saferl_version": getattr(saferl, "__version__", "unknown"),
        "algorithm": "a3c",
        "config": asdict(config),
        "num_timesteps": num_timesteps,
        "obs_shape": list(model.obs_shape),
        "n_actions": model.n_actions,
        "safety_totals": dict(safety_totals),
        "episodes": episodes,
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
    }
    write_json(metadata_path, metadata)


def read_a3c(path: str | os.PathLike[str]) -> tuple[A3CRecord, A3CConfig, dict[str, torch.Tensor]]:
    """The checked metadata record, its config and the tensors of the agent saved at ``path``.

    :raises SaferlError: naming the file that is missing, corrupt, replaced or does not fit.
    """
    weights, metadata_path = checkpoint_paths(path)
    metadata = read_format_json(metadata_path, FORMAT, FORMAT_VERSION, "A3C agent",
                                f"no A3C agent at {path} ({metadata_path} is missing): train and save one first")
    record = validate(A3CRecord, metadata, str(metadata_path), "retrain the agent or restore the file")
    try:
        config = A3CConfig(**record.config.model_dump())
    except SaferlError as err:
        raise SaferlError(f"{metadata_path}: {err}; retrain the agent or restore the file") from None
    tensors = load_safetensors(weights, record.weights_sha256, f"the A3C agent at {path}")
    return record, config, tensors


def restore_tensors(path: str | os.PathLike[str], tensors: dict[str, Any], model: ActorCritic,
                    optimizer: SharedAdam) -> None:
    """Copy the saved ``tensors`` into ``model`` and ``optimizer`` (in place, so shared memory stays shared).

    :raises SaferlError: the weights do not fit the model the metadata describes.
    """
    weights, metadata_path = checkpoint_paths(path)
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict({k[len("optimizer."):]: v for k, v in tensors.items()
                                   if k.startswith("optimizer.")})
    except (RuntimeError, KeyError) as err:
        raise SaferlError(f"{weights} does not fit the A3C model in {metadata_path} ({err})") from None
