"""Safety metrics: counters and the SB3 callback that logs them (real A2C training on a tiny budget)."""

import csv

import pytest
from stable_baselines3 import A2C
from stable_baselines3.common.vec_env import VecFrameStack

from saferl.agents.callbacks import SafetyCallback
from saferl.games import get_game
from saferl.oversight import ScriptedOverseer
from saferl.oversight.envs import make_vec_env


@pytest.mark.slow
def test_callback_logs_safety_counters_to_tensorboard_and_episodes_to_csv(tmp_path):
    envs = make_vec_env(get_game("pong"), n_envs=2, overseer=ScriptedOverseer(), seed=0, max_num_frames_per_episode=600)
    venv = VecFrameStack(envs, 4)
    csv_path = tmp_path / "safety.csv"
    callback = SafetyCallback(csv_path)
    model = A2C("CnnPolicy", venv, n_steps=8, seed=0, device="cpu", tensorboard_log=str(tmp_path / "tb"))
    model.learn(total_timesteps=480, callback=callback, log_interval=5)
    totals = callback.counters.totals
    assert totals["steps"] >= 480
    assert totals["blocks"] > 0
    assert totals["catastrophes"] == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert rows, "episodes are cut at 150 steps"
    assert sum(float(row["blocks"]) for row in rows) <= totals["blocks"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").iterdir())))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"safety/catastrophes", "safety/blocks", "safety/false_negatives", "safety/false_positives"} <= set(tags)
    assert events.Scalars("safety/blocks")[-1].value > 0
