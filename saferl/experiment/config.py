"""An experiment's config: :class:`ExperimentConfig` (checked field by field before any work), the Blocker options
it carries, reading a config file, and the record of a new experiment (``config.json`` with the resolved
hyperparameters and package versions)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ConfigDict

from saferl.agents import AGENTS, load_hyperparams
from saferl.agents.base import check_hyperparams
from saferl.errors import SaferlError
from saferl.files import write_json
from saferl.games import get_game
from saferl.oversight.intervention import Mode
from saferl.registry import check_overseer
from saferl.schema import finite, validate

if TYPE_CHECKING:
    from saferl.blocker import TrainConfig

CONDITIONS = ("none", "penalty_only", "hirl")
ENFORCING = tuple(mode.value for mode in Mode if mode.enforces)
CONFIG_FILE = "config.json"
VERSIONED = ("saferl", "torch", "stable-baselines3", "gymnasium", "ale-py", "numpy")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: a game, an agent, conditions and seeds, and the budget.

    :param oversight_steps: agent steps of human (or scripted) oversight before the Blocker takes over.
    :param total_steps: agent steps per run, all phases together.
    :param overseer_options: keyword arguments for the overseer (:func:`saferl.oversight.make_overseer`).
    :param blocker: Blocker training options (``margin``, ``folds``, ``epochs``, ``patience``, ``batch_size``, ...,
        and ``allow_degenerate``: hand over to a Blocker whose alarm is raised, see :mod:`saferl.blocker.alarm`;
        by default the run stops at the handover with the alarm's message).
    :param penalty: the reward added to a step the overseer blocks (``penalty_only``: would block).
    :param block_penalty: ``hirl``'s reward for a blocked step when it differs from ``penalty``, which then stays
        ``penalty_only``'s; None: ``penalty``.
    :param hyperparams: overrides of the agent's ``hyperparams.yml`` values.
    :param env: ALE settings over the game's (e.g. ``max_num_frames_per_episode: 2000`` to cut episodes).
    :param workers: runs trained at once, in separate processes.
    :param threads: torch CPU threads per run (more than one per core made DQN 6x slower on a busy machine).
    :param checkpoint_every: agent steps between checkpoints.
    :param last_episodes: ``mean_return`` is the mean game return over this many last episodes.
    """

    game: str = "pong"
    agent: str = "dqn"
    overseer: str = "scripted"
    overseer_options: dict[str, Any] = field(default_factory=dict)
    conditions: tuple[str, ...] = CONDITIONS
    seeds: tuple[int, ...] = (0,)
    oversight_steps: int = 10_000
    total_steps: int = 50_000
    mode: str = "replace"
    penalty: float = -1.0
    block_penalty: float | None = None
    blocker: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    workers: int = 1
    threads: int = 1
    checkpoint_every: int = 10_000
    last_episodes: int = 10

    __pydantic_config__ = ConfigDict(allow_inf_nan=False)  # how from_dict checks each field's type

    def __post_init__(self) -> None:
        """Check every setting before any work: a bad one fails here, before a file is written."""
        get_game(self.game)
        if self.agent not in AGENTS:
            raise SaferlError(f"unknown agent {self.agent!r} (--agent): choose one of {', '.join(AGENTS)}")
        finite(self.penalty, "--penalty")
        if self.block_penalty is not None:
            finite(self.block_penalty, "--block-penalty")
        check_hyperparams(self.agent, load_hyperparams(self.agent, self.game, self.hyperparams))
        blocker_settings(self.blocker, self.game)
        if self.mode not in ENFORCING:
            raise SaferlError(f"--mode {self.mode}: HIRL blocks with one of {', '.join(ENFORCING)}")
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or not self.conditions:
            raise SaferlError(f"unknown condition(s) {unknown} (--conditions): choose from {', '.join(CONDITIONS)}")
        if not 0 < self.oversight_steps < self.total_steps:
            raise SaferlError(f"--oversight-steps ({self.oversight_steps}) must be more than 0 and less than "
                              f"--total-steps ({self.total_steps}): the Blocker takes over in between")
        if self.overseer == "none" or self.overseer.startswith("blocker:"):
            raise SaferlError(f"--overseer {self.overseer}: HIRL needs a labelling overseer (scripted, lookahead, human)")
        if self.overseer == "human":
            self._check_human()
        check_overseer(self.overseer, self.game, self.overseer_options)
        if min(self.workers, self.threads, self.checkpoint_every, self.last_episodes) < 1 or not self.seeds:
            raise SaferlError("--workers, --threads, --checkpoint-every and --last-episodes must be at least 1, "
                              "and --seeds at least 1")
        if min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            raise SaferlError(f"seeds {list(self.seeds)}: give distinct seeds >= 0")

    @property
    def hirl_penalty(self) -> float:
        """The reward ``hirl`` adds to a blocked step."""
        return self.penalty if self.block_penalty is None else self.block_penalty

    def _check_human(self) -> None:
        """A person oversees in one window of this process: SB3 agents, one run at a time, a valid pace and zoom."""
        from saferl.human_ui import DEFAULT_PACE_MS, DEFAULT_SCALE, check_pace, check_scale

        if self.agent == "a3c":
            raise SaferlError("--overseer human cannot oversee --agent a3c: A3C steps its envs in worker processes, "
                              "and one window per worker makes no sense; choose --agent dqn, a2c or ppo")
        if self.workers > 1:
            raise SaferlError(f"--overseer human needs --workers 1, not {self.workers}: one person oversees one run "
                              "at a time")
        check_pace(self.overseer_options.get("pace", DEFAULT_PACE_MS))
        check_scale(self.overseer_options.get("scale", DEFAULT_SCALE))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {**asdict(self), "conditions": list(self.conditions), "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the config") -> ExperimentConfig:
        """The config ``data`` describes; unknown keys are an error naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SaferlError(f"{source}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        data = dict(data)
        if isinstance(data.get("conditions"), str):
            data["conditions"] = [c.strip() for c in data["conditions"].split(",")]
        return validate(cls, data, source, "fix that setting")


def blocker_settings(blocker: dict[str, Any], game: str, **defaults: Any) -> tuple[TrainConfig, dict[str, Any], bool]:
    """The experiment's ``blocker`` options as Blocker training settings: the :class:`TrainConfig` (``defaults``
    fill what the options leave out), the options of :func:`~saferl.blocker.fit.fit_blocker` (``margin``, ``folds``,
    ``novelty``, ``misses``, and the input: ``color``, ``stack``, as ``train-blocker``'s flags) and whether a Blocker
    whose alarm is raised may take over. Bad options fail here, before any work."""
    from saferl.blocker import TrainConfig, default_preprocessing
    from saferl.blocker.fit import check_fit_options

    options = {**defaults, **blocker}
    fit = {"margin": options.pop("margin", 0.0), "folds": options.pop("folds", 3),
           "novelty": options.pop("novelty", True), "misses": options.pop("misses", 0)}
    allow_degenerate = options.pop("allow_degenerate", False)
    try:
        fit["preprocessing"] = default_preprocessing(game, color=options.pop("color", "rgb"),
                                                     stack=options.pop("stack", 1))
        check_fit_options(fit["margin"], fit["folds"], fit["misses"])
        for name, value in (("allow_degenerate", allow_degenerate), ("novelty", fit["novelty"])):
            if not isinstance(value, bool):
                raise SaferlError(f"{name} must be true or false, not {value!r}")
        return TrainConfig(**options), fit, allow_degenerate
    except (SaferlError, TypeError) as err:
        raise SaferlError(f"blocker options {blocker}: {err}") from None


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An experiment config from a YAML or JSON file (``experiments/*.yml``)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        reason = " ".join(str(getattr(err, "strerror", None) or err).split())
        raise SaferlError(f"cannot read the experiment config {path} (--config): {reason}") from None
    if not isinstance(data, dict):
        raise SaferlError(f"{path} (--config) must hold a mapping of experiment settings")
    return data


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def prepare_experiment(config: ExperimentConfig | None, root: Path, resume: bool,
                       total_steps: int | None = None) -> ExperimentConfig:
    """The experiment's config: saved in ``root/config.json`` (new run) or read from it (``resume``; with
    ``total_steps``, its budget raised to that and saved, the budgets it had listed under ``extended_from``)."""
    path = root / CONFIG_FILE
    if resume:
        if not path.exists():
            raise SaferlError(f"--resume {root}: there is no {CONFIG_FILE} there; is it a run folder of "
                              "saferl experiment --out?")
        try:
            record = json.loads(path.read_text())
            saved = record["config"]
        except (ValueError, KeyError, TypeError) as err:
            raise SaferlError(f"{path} is damaged ({err}); it cannot be resumed") from None
        resumed = ExperimentConfig.from_dict(saved, str(path))
        if total_steps is None or total_steps == resumed.total_steps:
            return resumed
        if total_steps < resumed.total_steps:
            raise SaferlError(f"--total-steps {total_steps} is below the {resumed.total_steps} steps {root} was "
                              "started with: a budget can only be raised")
        extended = ExperimentConfig.from_dict({**saved, "total_steps": total_steps}, "--total-steps")
        history = [*record.get("extended_from", []), resumed.total_steps]
        write_json(path, {**record, "total_steps": total_steps, "config": extended.to_dict(),
                          "extended_from": history})
        return extended
    if config is None:
        raise SaferlError("give an experiment config, or --resume RUN_DIR")
    if path.exists():
        raise SaferlError(f"{root} already holds an experiment: use --resume {root} to finish it, or another --out")
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK):
        raise SaferlError(f"--out {root} is not writable")
    resolved = {"config": config.to_dict(), "hyperparams": load_hyperparams(config.agent, config.game, config.hyperparams),
                "frameskip": int(get_game(config.game).env_kwargs.get("frameskip", 4)), "versions": package_versions(),
                "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    # The report reads a flat config: its keys at the top level beside the nested record.
    write_json(path, {**config.to_dict(), **resolved})
    return config
