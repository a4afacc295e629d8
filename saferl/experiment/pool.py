"""Running an experiment: every (condition, seed) run not yet done, in this process or in a pool of ``spawn``-ed
worker processes, then the report."""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from saferl.errors import SaferlError
from saferl.experiment.config import ExperimentConfig, prepare_experiment
from saferl.experiment.run import Run, run_done, run_folder

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


def run_experiment(config: ExperimentConfig | None, out: str | os.PathLike[str], resume: bool = False,
                   progress: bool = True, allow_degenerate_blocker: bool = False,
                   total_steps: int | None = None, conditions: Sequence[str] | None = None,
                   workers: int | None = None) -> list[dict[str, Any]]:
    """Run every condition and seed of ``config`` into ``out`` (or, with ``resume``, finish the experiment
    in ``out`` with its saved config), then write the report. Returns the report rows.

    :param allow_degenerate_blocker: hand over to a Blocker whose alarm is raised (also on resume).
    :param total_steps: with ``resume``, raise the experiment's budget to this many steps per run: finished runs
        go on from their last checkpoint (on-policy agents; an off-policy run's replay buffer is gone).
    :param conditions: with ``resume``, carry on only these conditions' runs (None: all); the others stay as they
        are, and the report shows them all.
    :param workers: with ``resume``, runs at once on this machine (None: the saved config's).
    """
    from saferl.experiment.report import write_report

    root = Path(out)
    config = prepare_experiment(config, root, resume, total_steps)
    if allow_degenerate_blocker:
        config = replace(config, blocker={**config.blocker, "allow_degenerate": True})
    chosen = config.conditions if conditions is None else tuple(conditions)
    unknown = [c for c in chosen if c not in config.conditions]
    if unknown:
        raise SaferlError(f"--conditions {','.join(chosen)}: {root} has no runs of {', '.join(unknown)}; its "
                          f"conditions are {', '.join(config.conditions)}")
    todo = [(c, s) for s in config.seeds for c in config.conditions
            if c in chosen and not run_done(run_folder(root, c, s), config.total_steps)]
    workers = min(workers or config.workers, len(todo)) or 1
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


__all__ = ["Job", "run_experiment"]
