"""The HIRL experiment: config, runs with checkpoints, the report, sweeps.

* ``config``: :class:`ExperimentConfig` (checked before any work), Blocker options, config files, ``config.json``;
* ``run``: one (condition, seed) :class:`Run`, its phases, its summary;
* ``checkpoint``: a run's checkpoint and ``state.json``, checked before ``--resume`` trusts it;
* ``tables``: the CSV files a run writes as it goes (``episodes.csv``, ``curve.csv``);
* ``pool``: :func:`run_experiment`, every run in this process or in worker processes, then the report;
* ``report``, ``labour``, ``stats``, ``sweep``: the report, human labour, statistics, sweeps over configs.

The names below are imported when first used, so that ``saferl report`` does not load the agents.
"""

from __future__ import annotations

from typing import Any

_CONFIG = ("CONDITIONS", "ExperimentConfig", "blocker_settings", "load_config_file", "prepare_experiment")
_RUN = ("Phase", "Run", "phases", "run_folder")
_POOL = ("run_experiment",)


def __getattr__(name: str) -> Any:
    """The public names of the experiment's modules, imported on first use."""
    if name in _CONFIG:
        from saferl.experiment import config as module
    elif name in _RUN:
        from saferl.experiment import run as module
    elif name in _POOL:
        from saferl.experiment import pool as module
    else:
        raise AttributeError(f"module 'saferl.experiment' has no attribute {name!r}")
    return getattr(module, name)


__all__ = sorted([*_CONFIG, *_RUN, *_POOL])
