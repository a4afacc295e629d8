"""stable-baselines3's algorithms by name and their settings from YAML hyperparameters (``hyperparams.yml``,
an experiment's ``hyperparams``): what building an SB3 agent and rebuilding a saved policy share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"dqn": DQN, "a2c": A2C, "ppo": PPO}
ENV_KEYS = ("n_envs", "frame_stack", "backend", "rnd_coef")  # hyperparameters saferl reads itself, not SB3's


def linear_schedule(start: float) -> Callable[[float], float]:
    """A value falling linearly from ``start`` to 0 over training (SB3 passes the progress remaining)."""
    return lambda progress_remaining: progress_remaining * start


def sb3_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """SB3 keyword arguments from YAML hyperparameters: ``lin_X`` becomes a linear schedule from X, and
    ``policy_kwargs.optimizer: RMSpropTFLike`` (with ``optimizer_eps``) becomes the optimizer class."""
    kwargs = {k: v for k, v in params.items() if k not in ENV_KEYS and k != "policy"}
    for key, value in kwargs.items():
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = linear_schedule(float(value[4:]))
    policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
    if policy_kwargs.get("optimizer") == "RMSpropTFLike":
        from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

        policy_kwargs.pop("optimizer")
        policy_kwargs["optimizer_class"] = RMSpropTFLike
        policy_kwargs["optimizer_kwargs"] = {"alpha": 0.99, "eps": float(policy_kwargs.pop("optimizer_eps", 1e-5)),
                                             "weight_decay": 0}
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs
