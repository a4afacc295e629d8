"""Experiment grids on Ray Tune: games x agents x conditions x seeds, one trial per (condition, seed) run.

A sweep config is an experiment config (``experiments/*.yml``) with a ``grid`` of ``game``, ``agent``,
``conditions`` and ``seeds`` lists. Each (game, agent) gets an ordinary experiment folder,
``OUT/<game>__<agent>/``, and each trial writes its run into it exactly as ``saferl experiment`` does,
so ``saferl report`` and ``saferl experiment --resume`` work on it. On a cluster (``--address``), OUT
must be storage every node sees. ``sweep.md`` and ``sweep.json`` aggregate over seeds: the
interquartile mean and its bootstrap 95% confidence interval.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from saferl.errors import SaferlError
from saferl.experiment.config import ExperimentConfig, load_config_file, prepare_experiment
from saferl.experiment.run import SUMMARY_FILE, Run, run_folder
from saferl.experiment.stats import bootstrap_ci, iqm
from saferl.files import write_json

GRID_KEYS = ("game", "agent", "conditions", "seeds")
AGGREGATED = ("catastrophes", "catastrophes_after_human", "false_negatives", "human_labels", "mean_return")
INSTALL = "Ray is an optional extra: pip install 'saferl[distributed]' (or pip install 'ray[tune]')"


def experiment_configs(sweep: dict[str, Any], source: str = "the sweep config") -> list[ExperimentConfig]:
    """One experiment config per (game, agent) of the sweep's grid, each with all its conditions and seeds."""
    base = {k: v for k, v in sweep.items() if k != "grid"}
    grid = dict(sweep.get("grid") or {})
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise SaferlError(f"{source}: unknown grid key(s) {unknown}; a grid holds lists of {', '.join(GRID_KEYS)}")
    games = grid.get("game", [base.get("game", "pong")])
    agents = grid.get("agent", [base.get("agent", "dqn")])
    for key, value in (("game", games), ("agent", agents)):
        if not isinstance(value, list) or not value:
            raise SaferlError(f"{source}: grid.{key} must be a non-empty list")
    base.update({k: grid[k] for k in ("conditions", "seeds") if k in grid})
    configs = [ExperimentConfig.from_dict({**base, "game": game, "agent": agent}, source)
               for game, agent in itertools.product(games, agents)]
    if any(config.overseer == "human" for config in configs):
        raise SaferlError(f"{source}: a sweep cannot use the human overseer (trials run on remote workers, with no "
                          "person at a window); use scripted, lookahead or deferring, or run saferl experiment")
    return configs


def experiment_folder(out: Path, config: ExperimentConfig) -> Path:
    """Where the sweep keeps the experiment of ``config``'s game and agent."""
    return out / f"{config.game}__{config.agent}"


def _trial(params: dict[str, Any]) -> None:
    """One Ray Tune trial (``params["trial"]``): the run of one condition and seed of one experiment."""
    from ray import tune

    trial = params["trial"]
    config = ExperimentConfig.from_dict(trial["config"])
    folder = run_folder(Path(trial["root"]), trial["condition"], trial["seed"])
    run = Run(config, trial["condition"], trial["seed"], folder, threads=config.threads, progress=False)
    summary = json.loads((folder / SUMMARY_FILE).read_text()) if run.done else run.execute()
    tune.report({k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})


def run_sweep(sweep: dict[str, Any] | str | os.PathLike[str], out: str | os.PathLike[str], address: str | None = None,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
              max_concurrent: int | None = None) -> dict[str, Any]:
    """Run the sweep's grid as Ray Tune trials into ``out``; write every experiment's report and the aggregate.

    A sweep run again into the same ``out`` skips the finished runs and resumes the others from their
    checkpoints. Returns the aggregate (also in ``out/sweep.json``).
    """
    try:
        import ray
        from ray import tune
    except ImportError:
        raise SaferlError(f"saferl sweep needs Ray. {INSTALL}") from None
    source = str(sweep) if not isinstance(sweep, dict) else "the sweep config"
    data = load_config_file(sweep) if not isinstance(sweep, dict) else sweep
    root = Path(out).resolve()
    configs = experiment_configs(data, source)
    trials = []
    for config in configs:
        folder = experiment_folder(root, config)
        prepare_experiment(config if not (folder / "config.json").exists() else None, folder,
                           resume=(folder / "config.json").exists())
        trials += [{"config": config.to_dict(), "root": str(folder), "condition": c, "seed": s}
                   for s in config.seeds for c in config.conditions]
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": max(1, int(os.cpu_count() or 1))}))
    trainable = tune.with_resources(_trial, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    tuner = tune.Tuner(trainable, param_space={"trial": tune.grid_search(trials)},
                       tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
                       run_config=tune.RunConfig(name="tune", storage_path=str(root / "ray"), verbose=0))
    results = tuner.fit()
    failed = [str(result.error).splitlines()[-1] for result in results if result.error is not None]
    if failed:
        raise SaferlError(f"{len(failed)} sweep trial(s) failed: {failed[:3]}; rerun the same command to resume")
    return aggregate(root, configs)


def aggregate(root: Path, configs: list[ExperimentConfig]) -> dict[str, Any]:
    """Write every experiment's report and ``sweep.md`` / ``sweep.json`` with IQMs and bootstrap CIs over seeds."""
    from saferl.experiment.report import format_number, format_table, write_report

    rows = []
    for config in configs:
        runs = write_report(experiment_folder(root, config))
        for condition in config.conditions:
            summaries = [run for run in runs if run["condition"] == condition]
            row: dict[str, Any] = {"game": config.game, "agent": config.agent, "condition": condition,
                                   "seeds": len(summaries)}
            for key in AGGREGATED:
                values = [run[key] for run in summaries if run.get(key) is not None]
                low, high = bootstrap_ci(values)
                row[key] = {"iqm": iqm(values), "ci_low": low, "ci_high": high}
            rows.append(row)
    table = [{"game": r["game"], "agent": r["agent"], "condition": r["condition"], "seeds": r["seeds"],
              **{k: f"{format_number(r[k]['iqm'])} [{format_number(r[k]['ci_low'])}, {format_number(r[k]['ci_high'])}]"
                 for k in AGGREGATED}} for r in rows]
    lines = ["# Sweep", "", "Interquartile mean over seeds [bootstrap 95% confidence interval]. Each experiment's own "
             "report: " + ", ".join(f"[{experiment_folder(root, c).name}]({experiment_folder(root, c).name}/report.md)"
                                    for c in configs), "", format_table(table, ["game", "agent", "condition", "seeds",
                                                                               *AGGREGATED]), ""]
    (root / "sweep.md").write_text("\n".join(lines))
    result = {"sweep": str(root), "rows": rows}
    write_json(root / "sweep.json", result)
    return result
