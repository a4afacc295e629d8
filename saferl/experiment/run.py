"""The HIRL experiment: the paper's three phases against the baselines, one run per condition and seed.

Conditions (PAPER.md):

- ``none``: no oversight (catastrophes are still counted);
- ``penalty_only``: the overseer's penalty but no block (the reward-shaping baseline);
- ``hirl``: phase ``oversight``, the overseer blocks and its decisions become labels; then a Blocker is
  trained on them; phase ``blocker``, the Blocker oversees the rest of training. The same agent (and
  replay buffer) goes on across the phases.

A run folder (``RUN_DIR/runs/<condition>/seed-<k>/``) holds ``episodes.csv`` and ``curve.csv`` as the
run goes, a ``checkpoint/`` every ``checkpoint_every`` steps, at each phase's end and on Ctrl-C, and
``summary.json`` when it is done; :func:`run_experiment` resumes any unfinished run from its checkpoint
and writes the report (:mod:`saferl.experiment.report`).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import platform
import queue
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Sequence

import numpy as np
import yaml
from pydantic import AfterValidator, ConfigDict, Field

from saferl.agents import AGENTS, OversightSpec, label_stores, load_hyperparams, make_agent
from saferl.agents.base import check_hyperparams
from saferl.agents.sb3_agent import REPLAY_FILE
from saferl.errors import SaferlError
from saferl.files import write_json
from saferl.games import get_game
from saferl.oversight.metrics import COUNTED, EPISODE_FIELDS, block_rate
from saferl.registry import check_overseer
from saferl.oversight.intervention import Mode
from saferl.schema import Strict, finite, read_json, validate

if TYPE_CHECKING:
    from saferl.blocker import TrainConfig

CONDITIONS = ("none", "penalty_only", "hirl")
ENFORCING = tuple(mode.value for mode in Mode if mode.enforces)
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
STATE_FILE = "state.json"
EPISODE_COLUMNS = (*EPISODE_FIELDS, "phase", "step", "frames")
CURVE_COLUMNS = ("step", "frames", "phase", "catastrophes", "catastrophes_on_blocks", "blocks", "false_negatives",
                 "false_positives", "labels", "human_seconds")
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
        check_hyperparams(self.agent, load_hyperparams(self.agent, self.game, self.hyperparams))
        blocker_settings(self.blocker)
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


def blocker_settings(blocker: dict[str, Any], **defaults: Any) -> tuple[TrainConfig, float, int, bool]:
    """The experiment's ``blocker`` options as Blocker training settings: the :class:`TrainConfig` (``defaults``
    fill what the options leave out), the margin, the folds and whether a Blocker whose alarm is raised may take
    over. Bad options fail here, before any work."""
    from saferl.blocker import TrainConfig
    from saferl.blocker.fit import check_fit_options

    options = {**defaults, **blocker}
    margin, folds = options.pop("margin", 0.0), options.pop("folds", 3)
    allow_degenerate = options.pop("allow_degenerate", False)
    try:
        check_fit_options(margin, folds)
        if not isinstance(allow_degenerate, bool):
            raise SaferlError(f"allow_degenerate must be true or false, not {allow_degenerate!r}")
        return TrainConfig(**options), float(margin), int(folds), allow_degenerate
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


@dataclass(frozen=True)
class Phase:
    """A span of a run under one oversight: ``name`` until agent step ``end``."""

    name: str
    end: int
    spec: OversightSpec


def phases(config: ExperimentConfig, condition: str, folder: Path) -> list[Phase]:
    """The phases of ``condition``'s runs (the Blocker folder and labels live in the run ``folder``)."""
    if condition == "none":
        return [Phase("training", config.total_steps, OversightSpec("none", "observe", config.penalty))]
    if condition == "penalty_only":
        return [Phase("training", config.total_steps,
                      OversightSpec(config.overseer, "penalty_only", config.penalty, options=config.overseer_options))]
    human = OversightSpec(config.overseer, config.mode, config.penalty, str(folder / "labels"), config.overseer_options)
    blocker = OversightSpec(f"blocker:{folder / 'blocker'}", config.mode, config.penalty)
    return [Phase("oversight", config.oversight_steps, human), Phase("blocker", config.total_steps, blocker)]


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class _Table:
    """A CSV file appended row by row and flushed, truncated to ``rows`` rows when a run resumes."""

    def __init__(self, path: Path, columns: Sequence[str], rows: int = 0) -> None:
        self.path, self.columns, self.rows = path, tuple(columns), 0
        kept: list[str] = []
        if rows and path.exists():
            kept = path.read_text().splitlines()[1:rows + 1]
        with path.open("w", newline="") as file:
            file.write(",".join(self.columns) + "\n" + "".join(line + "\n" for line in kept))
        self.rows = len(kept)
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        self._file.close()


def _counted(totals: dict[str, float]) -> dict[str, float]:
    """``totals`` when it holds every counted figure."""
    missing = [key for key in COUNTED if key not in totals]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    return totals


class Handover(Strict):
    """``state.json``'s ``handover``: the totals when the human phase ended."""

    step: int = Field(ge=0)
    catastrophes: float = Field(ge=0)
    human_seconds: float = Field(ge=0)
    overseer_stats: dict[str, Any] = Field(default_factory=dict)


class RunState(Strict):
    """``checkpoint/state.json``: where a run stood at its last checkpoint (written by :meth:`Run.execute`)."""

    phase: int = Field(ge=0)
    totals: Annotated[dict[str, float], AfterValidator(_counted)] | None
    episodes_rows: int = Field(ge=0)
    curve_rows: int = Field(ge=0)
    handover: Handover | None
    blocker: dict[str, Any] | None
    seconds: float = Field(ge=0)
    checkpoint_bytes: int = Field(0, ge=0)


class Run:
    """One (condition, seed) run: its phases, agent, files and checkpoints."""

    def __init__(self, config: ExperimentConfig, condition: str, seed: int, folder: Path, threads: int | None = None,
                 position: int = 0, progress: bool = True) -> None:
        self.config, self.condition, self.seed, self.folder = config, condition, seed, folder
        self.threads, self.position, self.progress = threads, position, progress
        self.game = get_game(config.game)
        self.phases = phases(config, condition, folder)
        self.checkpoint = folder / "checkpoint"
        self.frameskip = int(self.game.env_kwargs.get("frameskip", 4))

    @property
    def done(self) -> bool:
        return (self.folder / SUMMARY_FILE).exists()

    @property
    def _afresh(self) -> str:
        """What to do when the checkpoint cannot be resumed."""
        return f"delete {self.folder} to start this run afresh"

    @staticmethod
    def _bytes(folder: Path) -> int:
        """The size of the files under ``folder`` (0 when there is none)."""
        return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())

    def _state(self) -> dict[str, Any]:
        """The saved state of an interrupted run, checked against :class:`RunState`, or a fresh one."""
        path = self.checkpoint / STATE_FILE
        if not path.exists():
            return {"phase": 0, "totals": None, "episodes_rows": 0, "curve_rows": 0, "handover": None,
                    "blocker": None, "seconds": 0.0, "checkpoint_bytes": 0}
        try:
            data = read_json(path)
        except SaferlError as err:
            raise SaferlError(f"{err}, or {self._afresh}") from None
        state = validate(RunState, data, str(path), self._afresh)
        if state.phase >= len(self.phases):
            raise SaferlError(f"{path}: phase {state.phase} is past the {len(self.phases)} phase(s) of a "
                              f"{self.condition} run; {self._afresh}")
        return {**data, "checkpoint_bytes": state.checkpoint_bytes}  # as written: counts stay ints

    def execute(self) -> dict[str, Any]:
        """Run (or resume) to the end; return the summary (also written to ``summary.json``)."""
        import torch
        from tqdm import tqdm

        if self.threads:
            torch.set_num_threads(self.threads)
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self._state()
        if self.phases[state["phase"]].name == "blocker" and state["blocker"] is None:
            state["phase"] -= 1  # stopped while the Blocker trained: the agent is still under the human's oversight
        phase = self.phases[state["phase"]]
        needs_frames = self.condition == "hirl"
        agent = make_agent(self.config.agent, self.game, self.config.total_steps, phase.spec, seed=self.seed,
                           device=self.config.device, hyperparams=self.config.hyperparams, with_frame=needs_frames,
                           log_dir=self.folder / "tensorboard", env_kwargs=self.config.env)
        if state["totals"] is not None:
            try:
                agent.load(self.checkpoint / "agent")
            except SaferlError as err:
                agent.close()
                raise SaferlError(f"{err}; {self._afresh}") from None
            agent.counters.totals.update(state["totals"])
        state["checkpoint_bytes"] = max(state["checkpoint_bytes"], self._bytes(self.checkpoint))
        episodes = _Table(self.folder / "episodes.csv", EPISODE_COLUMNS, state["episodes_rows"])
        curve = _Table(self.folder / "curve.csv", CURVE_COLUMNS, state["curve_rows"])
        started = time.perf_counter() - state["seconds"]
        bar = tqdm(total=self.config.total_steps, initial=agent.num_timesteps, unit="step", position=self.position,
                   desc=f"{self.condition} seed {self.seed}", disable=not self.progress, leave=True, dynamic_ncols=True)
        every = max(1, self.config.total_steps // 2000)
        last_sample = agent.num_timesteps

        def sample(name: str, force: bool = False) -> None:
            """A curve row every ``every`` steps (``force``: now), never two at one step (a resumed run's last
            row is at or before its checkpoint's step)."""
            nonlocal last_sample
            step = agent.num_timesteps
            if curve.rows and step == last_sample:
                return
            if force or curve.rows == 0 or step // every > last_sample // every:
                last_sample = step
                curve.write({"step": step, "frames": step * self.frameskip, "phase": name,
                             **{k: agent.counters.totals[k] for k in CURVE_COLUMNS[3:]}})

        def save(index: int) -> None:
            state.update(phase=index, totals=dict(agent.counters.totals), episodes_rows=episodes.rows,
                         curve_rows=curve.rows, seconds=time.perf_counter() - started)
            tmp = self.folder / "checkpoint.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            agent.save(tmp / "agent")
            write_json(tmp / STATE_FILE, state)
            old = self.folder / "checkpoint.old"
            shutil.rmtree(old, ignore_errors=True)
            if self.checkpoint.exists():
                os.replace(self.checkpoint, old)
            os.replace(tmp, self.checkpoint)
            shutil.rmtree(old, ignore_errors=True)
            state["checkpoint_bytes"] = max(state["checkpoint_bytes"], self._bytes(self.checkpoint))

        first = index = state["phase"]
        try:
            for index in range(first, len(self.phases)):
                phase = self.phases[index]
                if phase.name == "blocker" and state["blocker"] is None:
                    state["blocker"] = self._train_blocker()
                    save(index)
                if index != first:
                    agent.set_oversight(phase.spec)

                def on_episode(row: dict[str, Any], name: str = phase.name) -> None:
                    step = agent.num_timesteps
                    episodes.write({**row, "phase": name, "step": step, "frames": step * self.frameskip})
                    sample(name)

                def on_progress(step: int, name: str = phase.name) -> None:
                    bar.update(step - bar.n)
                    sample(name)

                while agent.num_timesteps < phase.end:
                    step, every_ckpt = agent.num_timesteps, self.config.checkpoint_every
                    stops = [phase.end, (step // every_ckpt + 1) * every_ckpt]
                    if state["handover"] is None:
                        stops.append(self.config.oversight_steps)
                    agent.learn_until(min(s for s in stops if s > step), on_episode, on_progress)
                    if state["handover"] is None and agent.num_timesteps >= self.config.oversight_steps:
                        state["handover"] = {"step": agent.num_timesteps, **agent.counters.totals,
                                             "overseer_stats": agent.overseer_stats()}
                    sample(phase.name, force=True)
                    save(index)
        except KeyboardInterrupt:
            save(index)
            raise
        finally:
            bar.close()
            episodes.close()
            curve.close()
            agent.close()
        summary = self._summary(agent, state, time.perf_counter() - started)
        write_json(self.folder / SUMMARY_FILE, summary)
        for replay in self.checkpoint.rglob(REPLAY_FILE):  # only resuming needs it; the weights stay
            replay.unlink()
        return summary

    def _train_blocker(self) -> dict[str, Any]:
        """Phase 2: fit the Blocker on this run's labels; return its held-out figures."""
        from saferl.blocker import fit_blocker

        train_config, margin, folds, allow_degenerate = blocker_settings(
            self.config.blocker, seed=self.seed, device=self.config.device, threads=self.threads, progress=self.progress)
        stores = label_stores(self.folder / "labels")
        result = fit_blocker(stores, self.game.name, out=self.folder / "blocker", config=train_config, margin=margin,
                             folds=folds)
        if result.alarm and not allow_degenerate:
            raise SaferlError(f"{self.folder / 'blocker'}: ALARM: {result.alarm}; the Blocker does not take over. "
                              f"Record more human-phase labels (a new run with more --oversight-steps), or hand over "
                              f"anyway: saferl experiment --resume {self.folder.parent.parent.parent} "
                              "--allow-degenerate-blocker")
        summary = result.summary()
        return {key: summary[key] for key in ("labels", "blocks", "examples", "positives", "false_negatives",
                                              "false_positive_rate", "auc", "threshold", "promised_fn_rate",
                                              "val_block_share", "teacher_block_share", "alarm", "train_seconds")}

    def _summary(self, agent: Any, state: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The run's report row. ``checkpoint_bytes`` is the size of the largest checkpoint the run wrote (weights,
        replay buffer, state): the disk a run needs to be resumable, twice that while a save replaces the previous
        checkpoint. The replay buffer is deleted when the run is done, so the checkpoint left is smaller."""
        from saferl.experiment.report import read_csv

        totals = agent.counters.totals
        handover = state["handover"] or {"step": self.config.oversight_steps, **dict.fromkeys(COUNTED, 0)}
        rows = read_csv(self.folder / "episodes.csv")
        returns = rows.get("game_return", np.empty(0))[-self.config.last_episodes:]
        human = self.condition != "none"
        summary = {
            "condition": self.condition,
            "seed": self.seed,
            "steps": agent.num_timesteps,
            "frames": agent.num_timesteps * self.frameskip,
            "handover_step": int(handover["step"]),
            "catastrophes": int(totals["catastrophes"]),
            "catastrophes_during_human": int(handover["catastrophes"]),
            "catastrophes_after_human": int(totals["catastrophes"] - handover["catastrophes"]),
            "catastrophes_on_blocks": int(totals["catastrophes_on_blocks"]),
            "false_negatives": int(totals["false_negatives"]),
            "false_positives": int(totals["false_positives"]),
            "blocks": int(totals["blocks"]),
            "block_rate": block_rate(totals),
            "human_labels": int(self._human_labels(agent) if human else 0),
            "human_seconds": float(handover["human_seconds"] if self.condition == "hirl" else totals["human_seconds"]),
            "mean_return": float(np.mean(returns)) if len(returns) else None,
            "episodes": int(len(rows.get("game_return", ()))),
            "seconds": round(seconds, 1),
            "checkpoint_bytes": int(state["checkpoint_bytes"]),
        }
        if state["blocker"] is not None:
            summary["blocker"] = state["blocker"]
        if handover.get("overseer_stats"):
            summary["human_phase_overseer"] = handover["overseer_stats"]
        return summary

    def _human_labels(self, agent: Any) -> int:
        """Decisions the human (or scripted stand-in) made: every label stored for hirl (a crash can add labels
        for steps redone on resume: they were still given); every step it reviewed for ``penalty_only``."""
        if self.condition == "hirl":
            from saferl.labels.store import LabelStore

            total = 0
            for path in label_stores(self.folder / "labels"):
                with LabelStore.open(path) as store:
                    total += len(store)
            return total
        return int(agent.counters.totals["steps"])


Job = tuple[ExperimentConfig, str, int, str, int, int, bool]


def _execute(job: Job) -> dict[str, Any]:
    """Run one (condition, seed)."""
    config, condition, seed, folder, threads, position, progress = job
    return Run(config, condition, seed, Path(folder), threads, position, progress).execute()


def _worker(jobs: list[Job], failures: Any) -> None:
    """A worker process: its runs one after the other. Ctrl-C reaches every process of the terminal, so the
    run in progress saves its checkpoint and the worker stops; a failure is reported and the worker stops."""
    for job in jobs:
        try:
            _execute(job)
        except KeyboardInterrupt:
            return
        except SaferlError as err:
            failures.put(f"{job[1]} seed {job[2]}: {err}")
            return
        except BaseException as err:  # noqa: BLE001 - report anything to the parent
            import traceback

            failures.put(f"{job[1]} seed {job[2]}: {err}\n{traceback.format_exc()}")
            return


def _run_in_workers(jobs: list[Job], workers: int) -> None:
    """Run ``jobs`` in ``workers`` processes (job k in process k mod workers, in order)."""
    context = multiprocessing.get_context("spawn")
    failures = context.Queue()
    processes = [context.Process(target=_worker, args=(jobs[k::workers], failures)) for k in range(workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:  # they are saving their checkpoints
            process.join()
        raise
    errors = []
    while True:
        try:
            errors.append(failures.get(timeout=0.2))
        except queue.Empty:
            break
    if errors or any(process.exitcode for process in processes):
        raise SaferlError("runs failed (finish the rest with --resume):\n" + "\n".join(errors or ["a worker died"]))


def run_folder(root: Path, condition: str, seed: int) -> Path:
    """Where the run of ``condition`` and ``seed`` lives."""
    return root / "runs" / condition / f"seed-{seed}"


def run_experiment(config: ExperimentConfig | None, out: str | os.PathLike[str], resume: bool = False,
                   progress: bool = True, allow_degenerate_blocker: bool = False) -> list[dict[str, Any]]:
    """Run every condition and seed of ``config`` into ``out`` (or, with ``resume``, finish the experiment
    in ``out`` with its saved config), then write the report. Returns the report rows.

    :param allow_degenerate_blocker: hand over to a Blocker whose alarm is raised (also on resume).
    """
    from saferl.experiment.report import write_report

    root = Path(out)
    config = prepare_experiment(config, root, resume)
    if allow_degenerate_blocker:
        config = replace(config, blocker={**config.blocker, "allow_degenerate": True})
    todo = [(c, s) for s in config.seeds for c in config.conditions if not (run_folder(root, c, s) / SUMMARY_FILE).exists()]
    workers = min(config.workers, len(todo)) or 1
    # hirl runs first: they are the longest (phase 2 trains the Blocker).
    todo.sort(key=lambda run: run[0] != "hirl")
    jobs = [(config, c, s, str(run_folder(root, c, s)), config.threads, k % workers, progress)
            for k, (c, s) in enumerate(todo)]
    if workers == 1:
        for job in jobs:
            _execute(job)
    else:
        _run_in_workers(jobs, workers)
    return write_report(root)


def prepare_experiment(config: ExperimentConfig | None, root: Path, resume: bool) -> ExperimentConfig:
    """The experiment's config: saved in ``root/config.json`` (new run) or read from it (``resume``)."""
    path = root / CONFIG_FILE
    if resume:
        if not path.exists():
            raise SaferlError(f"--resume {root}: there is no {CONFIG_FILE} there; is it a run folder of "
                              "saferl experiment --out?")
        try:
            saved = json.loads(path.read_text())["config"]
        except (ValueError, KeyError) as err:
            raise SaferlError(f"{path} is damaged ({err}); it cannot be resumed") from None
        return ExperimentConfig.from_dict(saved, str(path))
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


__all__ = ["CONDITIONS", "ExperimentConfig", "Phase", "Run", "load_config_file", "phases", "prepare_experiment", "run_experiment",
           "run_folder"]
