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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saferl.agents import OversightSpec, discard_resume_state, label_stores, make_agent
from saferl.errors import SaferlError
from saferl.experiment.checkpoint import folder_bytes, read_state, save_checkpoint
from saferl.experiment.config import ExperimentConfig, blocker_settings
from saferl.experiment.tables import CURVE_COLUMNS, EPISODE_COLUMNS, Table
from saferl.files import write_json
from saferl.games import get_game
from saferl.oversight.metrics import COUNTED, block_rate

SUMMARY_FILE = "summary.json"
AGENT_DIR = "agent"  # the finished run's policy (safetensors + JSON)


@dataclass(frozen=True)
class Phase:
    """A span of a run under one oversight: ``name`` until agent step ``end``."""

    name: str
    end: int
    spec: OversightSpec


def phases(config: ExperimentConfig, condition: str, folder: Path) -> list[Phase]:
    """The phases of ``condition``'s runs (the Blocker folder and labels live in the run ``folder``). The Blocker
    replaces a blocked action as the human phase's overseer did: with the first of its ``prefer`` that passes."""
    if condition == "none":
        return [Phase("training", config.total_steps, OversightSpec("none", "observe", config.penalty))]
    if condition == "penalty_only":
        return [Phase("training", config.total_steps,
                      OversightSpec(config.overseer, "penalty_only", config.penalty, options=config.overseer_options))]
    human = OversightSpec(config.overseer, config.mode, config.hirl_penalty, str(folder / "labels"),
                          config.overseer_options)
    prefer = {"prefer": config.overseer_options["prefer"]} if "prefer" in config.overseer_options else {}
    blocker = OversightSpec(f"blocker:{folder / 'blocker'}", config.mode, config.hirl_penalty, options=prefer)
    return [Phase("oversight", config.oversight_steps, human), Phase("blocker", config.total_steps, blocker)]



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
        """Whether the run has finished its budget (a run finished at a smaller one goes on when the experiment's
        ``total_steps`` is raised: ``saferl experiment --resume DIR --total-steps N``)."""
        return run_done(self.folder, self.config.total_steps)

    @property
    def _afresh(self) -> str:
        """What to do when the checkpoint cannot be resumed."""
        return f"delete {self.folder} to start this run afresh"

    def _state(self) -> dict[str, Any]:
        """The saved state of an interrupted run, checked against
        :class:`~saferl.experiment.checkpoint.RunState`, or a fresh one."""
        return read_state(self.checkpoint, len(self.phases), self.condition, self._afresh)

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
        state["checkpoint_bytes"] = max(state["checkpoint_bytes"], folder_bytes(self.checkpoint))
        (self.folder / SUMMARY_FILE).unlink(missing_ok=True)  # a smaller budget's: the run goes on, not finished
        episodes = Table(self.folder / "episodes.csv", EPISODE_COLUMNS, state["episodes_rows"])
        curve = Table(self.folder / "curve.csv", CURVE_COLUMNS, state["curve_rows"])
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
            save_checkpoint(self.checkpoint, agent, state)
            state["checkpoint_bytes"] = max(state["checkpoint_bytes"], folder_bytes(self.checkpoint))

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
            agent.export_policy(self.folder / AGENT_DIR)  # the trained agent, for saferl evaluate
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
        discard_resume_state(self.checkpoint)  # only resuming needs it; the weights stay
        return summary

    def _train_blocker(self) -> dict[str, Any]:
        """Phase 2: fit the Blocker on this run's labels and on those its overseer started from (a deferring
        overseer's prior: everything the person has said about the game); return its held-out figures."""
        from saferl.blocker import fit_blocker
        from saferl.registry import prior_label_stores

        train_config, fit_options, allow_degenerate = blocker_settings(
            self.config.blocker, self.game.name, seed=self.seed, device=self.config.device, threads=self.threads,
            progress=self.progress)
        stores = label_stores(self.folder / "labels")
        stores += [Path(path) for path in prior_label_stores(self.config.overseer, self.config.overseer_options)]
        result = fit_blocker(stores, self.game.name, out=self.folder / "blocker", config=train_config, **fit_options)
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
        from saferl.experiment.report import read_csv, whole_episodes

        totals = agent.counters.totals
        handover = state["handover"] or {"step": self.config.oversight_steps, **dict.fromkeys(COUNTED, 0)}
        rows = whole_episodes(read_csv(self.folder / "episodes.csv"))
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


def run_done(folder: Path, total_steps: int) -> bool:
    """Whether the run in ``folder`` finished with at least ``total_steps`` steps (its ``summary.json``)."""
    from saferl.schema import read_json

    path = folder / SUMMARY_FILE
    if not path.exists():
        return False
    try:
        summary = read_json(path)
    except SaferlError:  # damaged: the report names the run as one that did not finish
        return True
    steps = summary.get("steps") if isinstance(summary, dict) else None
    return not isinstance(steps, int) or steps >= total_steps


def run_folder(root: Path, condition: str, seed: int) -> Path:
    """Where the run of ``condition`` and ``seed`` lives."""
    return root / "runs" / condition / f"seed-{seed}"


__all__ = ["SUMMARY_FILE", "Phase", "Run", "phases", "run_done", "run_folder"]
