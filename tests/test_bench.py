"""The benchmarks' headline figures: A2C's side-by-side training and acting ratios, measured at a tiny scale."""

import math
import sys
from pathlib import Path

import pytest

from helpers import PONG

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402
import training_fps  # noqa: E402
from sidebyside import untrained_blocker  # noqa: E402

from saferl.blocker.ensemble import save_ensemble  # noqa: E402


@pytest.fixture
def blocker(tmp_path):
    """An untrained Blocker of the deployed shape (3 members, a novelty memory) that blocks the actions its random
    weights score above 0, saved as ``saferl train-blocker`` saves one."""
    ensemble = untrained_blocker(PONG)
    ensemble.threshold_logit = 0.0
    ensemble.novelty.radii = [1e6] * len(ensemble.members)  # the widest a saved one may have: nothing is novel
    return save_ensemble(ensemble, tmp_path / "blocker")


def test_training_fps_reports_a2cs_ratios_from_its_own_measurements(blocker):
    figures = training_fps.measure(str(blocker), algorithms=("a2c",), rounds=1, scale=0.05, log=lambda line: None)
    for key in training_fps.A2C_HEADLINES:
        assert math.isfinite(figures[key]) and figures[key] > 0, key
        assert figures[key] == figures[key.replace("a2c_", "blocker_")], "A2C alone: the lowest ratio is A2C's"
    assert figures["a2c_steps"] == 40, "one rollout of 8 envs x 5 steps a round at this scale"
    near = pytest.approx  # the figures are rounded
    assert figures["a2c_training_fps_ratio"] == near(figures["a2c_blocker_fps"] / figures["a2c_none_fps"], abs=2e-3)
    assert figures["a2c_acting_fps_ratio"] == near(figures["a2c_acting_blocker_fps"] / figures["a2c_acting_none_fps"],
                                                   abs=2e-3)
    assert figures["a2c_training_cpu_ratio"] == near(figures["a2c_none_cpu_us_per_step"]
                                                     / figures["a2c_blocker_cpu_us_per_step"], abs=2e-3)
    assert figures["a2c_acting_learner_cpu_ratio"] == near(figures["a2c_acting_none_learner_cpu_us_per_step"]
                                                           / figures["a2c_acting_blocker_learner_cpu_us_per_step"],
                                                           abs=2e-3)
    for name in ("none", "blocker"):  # acting is a part of training: its rate counts fewer seconds
        assert figures[f"a2c_acting_{name}_fps"] > figures[f"a2c_{name}_fps"] > 0
    assert figures["a2c_blocker_blocks"] > 0, "the overseen agent was overseen"


def test_run_reports_a2cs_headline_ratios(monkeypatch):
    """``bench/run.py`` passes A2C's ratios from ``training_fps`` through as headline figures."""
    parts = {"blocker_training": {"labels_per_second": 1.0},
             "env_speed": {key: 1.0 for key in ("oversight_vec_vs_async", "oversight_vec_vs_cpp",
                                                "oversight_vec_vs_async_by_cpu")},
             "training_fps": {**{f"blocker_{figure}_ratio": 0.5 for figure in training_fps.HEADLINES},
                              **{key: 0.9 + k / 100 for k, key in enumerate(training_fps.A2C_HEADLINES)}}}
    monkeypatch.setattr(bench_run.blocker_training, "measure", lambda *a, **k: parts["blocker_training"])
    monkeypatch.setattr(bench_run.env_speed, "measure", lambda *a, **k: parts["env_speed"])
    monkeypatch.setattr(bench_run.training_fps, "measure", lambda *a, **k: parts["training_fps"])
    result = bench_run.run(blocker="unused")
    assert [result[key] for key in training_fps.A2C_HEADLINES] == [0.9, 0.91, 0.92, 0.93]
    assert result["a2c_acting_fps_ratio"] == result["training_fps.a2c_acting_fps_ratio"] == 0.92
    assert all(result[f"blocker_{figure}_ratio"] == 0.5 for figure in training_fps.HEADLINES)
