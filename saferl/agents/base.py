"""What every agent shares: who oversees it (an :class:`OversightSpec`), its hyperparameters, and the protocol
the experiment pipeline drives (:class:`Agent`)."""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import yaml

from saferl.errors import SaferlError
from saferl.oversight.metrics import SafetyCounters

AGENTS = ("dqn", "a2c", "ppo", "a3c")
LABELS_FILE = "labels.bin"


@dataclass(frozen=True)
class OversightSpec:
    """Who oversees the agent's envs during a phase, as plain (picklable) data.

    :param overseer: an overseer name for :func:`saferl.oversight.make_overseer` (``none``, ``scripted``,
        ``lookahead``, ``blocker:DIR``).
    :param mode: what a block does (``replace``, ``prune``, ``penalty_only``, ``observe``).
    :param penalty: the reward added to a blocked step.
    :param label_dir: where the overseer's decisions are stored as labels (None: nowhere).
    :param options: keyword arguments for the overseer (see :func:`saferl.oversight.make_overseer`).
    """

    overseer: str = "none"
    mode: str = "replace"
    penalty: float = -1.0
    label_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Agent(Protocol):
    """A learning agent under oversight, driven phase by phase by :mod:`saferl.experiment.run`."""

    @property
    def num_timesteps(self) -> int:
        """Agent steps taken so far (all envs together), across phases."""

    @property
    def counters(self) -> SafetyCounters:
        """Safety counters of all its envs, across phases."""

    def set_oversight(self, spec: OversightSpec) -> None:
        """Oversee the agent's steps from now on as ``spec`` says (same agent, same replay buffer)."""

    def overseer_stats(self) -> dict[str, Any]:
        """What the current overseer tells of its work (the deferring overseer: why it asked), or {}."""

    def learn_until(self, step: int, on_episode: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Learn until :attr:`num_timesteps` reaches ``step`` (agents that train on whole rollouts may go on to
        the rollout's end); ``on_episode`` gets each finished episode's row."""

    def save(self, folder: Path) -> None:
        """Save what resuming needs (weights, optimizer, replay buffer) to ``folder``, without pickle."""

    def export_policy(self, folder: Path) -> None:
        """Write the trained policy alone to ``folder``, as safetensors and JSON (``saferl evaluate`` plays it)."""

    def load(self, folder: Path) -> None:
        """Restore what :meth:`save` wrote."""

    def close(self) -> None:
        """Close envs and label stores."""


def load_hyperparams(agent: str, game: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The agent's hyperparameters: ``hyperparams.yml``'s values, then the game's, then ``overrides``."""
    if agent not in AGENTS:
        raise SaferlError(f"unknown agent {agent!r} (--agent): choose one of {', '.join(AGENTS)}")
    table = yaml.safe_load(resources.files("saferl.agents").joinpath("hyperparams.yml").read_text())
    params = dict(table[agent])
    games = params.pop("games", {}) or {}
    params.update(games.get(game, {}) if game else {})
    params.update(overrides or {})
    return params


#: Ranges of the hyperparameters saferl's agents share (a ``lin_X`` schedule is checked as X): what a value must
#: be, and the test.
_RANGE: dict[str, tuple[str, Callable[[float], bool]]] = {
    **dict.fromkeys(("n_envs", "frame_stack", "buffer_size", "batch_size", "n_steps", "n_epochs", "train_freq",
                     "target_update_interval", "n_workers"),
                    ("a whole number >= 1", lambda x: x >= 1 and float(x).is_integer())),
    **dict.fromkeys(("learning_starts", "ent_coef", "vf_coef", "entropy_coef", "value_coef", "rnd_coef"),
                    (">= 0", lambda x: x >= 0)),
    **dict.fromkeys(("gamma", "gae_lambda", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
                     "tau"), ("in [0, 1]", lambda x: 0 <= x <= 1)),
    **dict.fromkeys(("learning_rate", "max_grad_norm", "clip_range"), ("> 0", lambda x: x > 0)),
}
#: Keys saferl reads itself, beside the algorithm's own constructor arguments.
_SAFERL_KEYS = ("n_envs", "frame_stack", "backend", "policy", "rnd_coef")
_NOT_HYPERPARAMS = ("self", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model")


def hyperparam_names(agent: str) -> set[str]:
    """The hyperparameters ``agent`` takes: its algorithm's constructor arguments and saferl's env keys."""
    if agent == "a3c":
        from saferl.agents.a3c import A3CConfig

        return {*A3CConfig.__dataclass_fields__, "frame_stack"} - {"seed", "device"}
    import stable_baselines3

    algorithm = getattr(stable_baselines3, agent.upper())
    return (set(inspect.signature(algorithm).parameters) - set(_NOT_HYPERPARAMS)) | set(_SAFERL_KEYS)


def check_hyperparams(agent: str, params: dict[str, Any], source: str = "--hyperparam") -> None:
    """Refuse, before any work, a hyperparameter ``agent`` does not take or a value out of its range."""
    unknown = sorted(set(params) - hyperparam_names(agent))
    if unknown:
        raise SaferlError(f"{source}: {agent} takes no hyperparameter {', '.join(unknown)}; see "
                          f"saferl/agents/hyperparams.yml and the {agent.upper()} docs for the names")
    for key, value in params.items():
        if key not in _RANGE:
            continue
        want, ok = _RANGE[key]
        number = value[4:] if isinstance(value, str) and value.startswith("lin_") else value
        try:
            number = float(number) if isinstance(number, str) else number
        except ValueError:
            pass
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise SaferlError(f"{source}: {key}={value!r} must be a finite number (or lin_X, a linear schedule)")
        if not ok(number):
            raise SaferlError(f"{source}: {key}={value!r} must be {want}")
    if "backend" in params:
        from saferl.env.factory import BACKENDS

        if params["backend"] not in BACKENDS:
            raise SaferlError(f"{source}: backend={params['backend']!r}: choose one of {', '.join(BACKENDS)}")


def label_stores(folder: str | os.PathLike[str]) -> list[Path]:
    """The label stores in ``folder`` (itself, or its subfolders, such as one per A3C worker), sorted."""
    root = Path(folder)
    return sorted(path.parent for path in root.rglob(LABELS_FILE))
