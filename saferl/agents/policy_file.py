"""A trained agent to keep, ship and replay: its policy network as safetensors and ``policy.json`` (algorithm,
game, frame stack, policy settings, the weights' sha256 and a digest of every field) -- what ``saferl evaluate``
plays, without the optimizer or the replay buffer a checkpoint carries. A3C agents are kept in their own files
(:mod:`saferl.agents.a3c.io`), which ``saferl evaluate`` reads too."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

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

WEIGHTS = "policy.safetensors"
METADATA = "policy.json"
FORMAT = "saferl-policy"
FORMAT_VERSION = 1
SB3_ALGORITHMS = ("dqn", "a2c", "ppo")

#: ``act(observations, deterministic)``: a batch of frame-stacked observations (N x stack x 84 x 84) to actions.
Act = Callable[[np.ndarray, bool], np.ndarray]


class PolicyRecord(Strict):
    """What ``policy.json`` must hold before its weights are loaded."""

    algorithm: Literal[SB3_ALGORITHMS]  # type: ignore[valid-type]
    game: str
    frame_stack: int = Field(ge=1, le=16)
    n_actions: int = Field(ge=2, le=18)
    policy: Literal["CnnPolicy"]
    policy_kwargs: dict[str, Any] = Field(default_factory=dict)
    num_timesteps: int = Field(ge=0)
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def save_policy(model: Any, algorithm: str, game: str, hyperparams: dict[str, Any],
                folder: str | os.PathLike[str]) -> Path:
    """Write the SB3 ``model``'s policy network to ``folder`` (created) as :data:`WEIGHTS` and :data:`METADATA`."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:  # save_model keeps one copy of the tensors the heads share
        save_model(model.policy.to("cpu"), str(tmp), metadata={"format": FORMAT, "game": game})
    model.policy.to(model.device)
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "algorithm": algorithm, "game": game,
              "frame_stack": int(hyperparams.get("frame_stack", 4)), "n_actions": int(model.action_space.n),
              "policy": hyperparams.get("policy", "CnnPolicy"),
              "policy_kwargs": dict(hyperparams.get("policy_kwargs") or {}),
              "num_timesteps": int(model.num_timesteps), "weights_sha256": sha256_file(folder / WEIGHTS)}
    write_json(folder / METADATA, with_digest(record))
    return folder


def is_policy(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved SB3 policy (:func:`save_policy`)."""
    return (Path(folder) / METADATA).is_file()


def load_policy(folder: str | os.PathLike[str], game: str) -> tuple[PolicyRecord, Act]:
    """The policy saved in ``folder`` for ``game``, checked (format, digest, fields, weights' sha256 and
    values) before it is built; returns its record and a deterministic-or-not ``act`` (see :data:`Act`)."""
    import gymnasium as gym
    import torch
    from safetensors.torch import load_model

    from saferl.agents.sb3_settings import ALGORITHMS, sb3_kwargs

    folder = Path(folder)
    path, fix = folder / METADATA, "restore the agent folder or export it again"
    data = read_format_json(path, FORMAT, FORMAT_VERSION, "agent policy",
                            f"no saved agent in {folder} ({METADATA} is missing): a run writes one to "
                            "RUN/runs/<condition>/seed-<k>/agent when it ends")
    check_digest(data, path, fix)
    record = validate(PolicyRecord, data, str(path), fix)
    if record.game != game:
        raise SaferlError(f"{path} is an agent for {record.game!r}, not {game!r}: pass --game {record.game}")
    load_safetensors(folder / WEIGHTS, record.weights_sha256, f"the agent in {folder}")  # its hash and values
    policy_class = ALGORITHMS[record.algorithm].policy_aliases[record.policy]
    kwargs = sb3_kwargs({"policy_kwargs": record.policy_kwargs}).get("policy_kwargs", {})
    space = gym.spaces.Box(0, 255, (record.frame_stack, 84, 84), np.uint8)
    policy = policy_class(space, gym.spaces.Discrete(record.n_actions), lambda _: 0.0, **kwargs)
    try:
        load_model(policy, str(folder / WEIGHTS), strict=True)
    except RuntimeError as err:
        raise SaferlError(f"{folder / WEIGHTS} does not fit a {record.algorithm} {record.policy} "
                          f"({str(err).splitlines()[0]}); {fix}") from None
    policy.set_training_mode(False)

    def act(observations: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.no_grad():
            return policy.predict(observations, deterministic=deterministic)[0]

    return record, act


__all__ = ["FORMAT", "METADATA", "PolicyRecord", "WEIGHTS", "is_policy", "load_policy", "save_policy"]
