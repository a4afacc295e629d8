"""Experiment grids on a local Ray: a 2-trial sweep at a tiny budget, gathered into one aggregate report."""

import json
import sys

import pytest

from saferl.errors import SaferlError
from saferl.experiment.stats import bootstrap_ci, iqm
from saferl.experiment.sweep import run_sweep

SWEEP = {
    "grid": {"game": ["pong"], "agent": ["dqn"], "conditions": ["none", "penalty_only"], "seeds": [0]},
    "oversight_steps": 200, "total_steps": 400, "checkpoint_every": 400,
    "hyperparams": {"n_envs": 2, "buffer_size": 500, "learning_starts": 100},
    "env": {"max_num_frames_per_episode": 400},
}


@pytest.mark.slow
def test_a_two_trial_sweep_on_local_ray_writes_the_experiment_and_the_aggregate(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(SWEEP, tmp_path / "sweep", cpus_per_trial=1)
    finally:
        ray.shutdown()
    folder = tmp_path / "sweep" / "pong__dqn"
    runs = json.loads((folder / "report.json").read_text())
    assert [r["condition"] for r in runs] == ["none", "penalty_only"]
    assert all(r["steps"] >= 400 for r in runs)
    rows = {row["condition"]: row for row in result["rows"]}
    for run in runs:  # one seed: the IQM is the run's figure, and so is its interval
        figure = rows[run["condition"]]["catastrophes"]
        assert figure["iqm"] == figure["ci_low"] == figure["ci_high"] == run["catastrophes"]
    assert rows["none"]["catastrophes"]["iqm"] > 0
    assert "pong__dqn/report.md" in (tmp_path / "sweep" / "sweep.md").read_text()
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rows"] == json.loads(json.dumps(result["rows"]))


def test_iqm_is_the_mean_of_the_middle_half_and_the_bootstrap_interval_holds_it():
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(3.5)
    low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 10.0])
    assert low <= iqm([1.0, 2.0, 3.0, 4.0, 10.0]) <= high


def test_a_sweep_refuses_the_human_overseer_and_says_how_to_install_ray(tmp_path, monkeypatch):
    with pytest.raises(SaferlError, match="human"):
        run_sweep({**SWEEP, "overseer": "human"}, tmp_path / "a")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SaferlError, match=r"saferl\[distributed\]"):
        run_sweep(SWEEP, tmp_path / "b")
