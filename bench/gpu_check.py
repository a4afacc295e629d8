"""Train an agent and a Blocker on cuda and on the CPU, side by side, and print the speed ratios.

The one script to run on a machine with a GPU (``python bench/gpu_check.py --json``): it checks that
DQN and PPO train on cuda under oversight, and that a Blocker trains and scores on cuda, and records
fps (agent steps per second) and labels per second on each device. Without cuda it runs the CPU half
and says so.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sidebyside import print_figures

from saferl.agents import OversightSpec, make_agent
from saferl.blocker import TrainConfig, fit_blocker
from saferl.env.ale import game_action_names
from saferl.games import get_game
from saferl.labels.store import LabelStore
from saferl.oversight import ScriptedOverseer
from saferl.oversight.envs import make_vec_env

AGENT_PARAMS = {
    "dqn": {"n_envs": 8, "buffer_size": 20000, "learning_starts": 1000, "train_freq": 4},
    "ppo": {"n_envs": 8, "n_steps": 128, "batch_size": 256, "n_epochs": 4},
}


def record_labels(path: Path, steps: int, seed: int = 0) -> Path:
    """Labels of the scripted overseer over a random policy (8 envs)."""
    game = get_game("pong")
    names = game_action_names(game)
    with LabelStore.create(path, game.name, names) as store:
        venv = make_vec_env(game, n_envs=8, overseer=ScriptedOverseer(), label_store=store, seed=seed, preprocess=False)
        venv.reset()
        rng = np.random.default_rng(seed)
        for _ in range(steps // 8):
            venv.step(rng.integers(len(names), size=8))
        venv.close()
    return path


def agent_fps(name: str, device: str, steps: int) -> float:
    """Agent steps per second of ``name`` learning Pong under the scripted overseer on ``device``."""
    agent = make_agent(name, get_game("pong"), steps, OversightSpec("scripted", "replace"), seed=0, device=device,
                       hyperparams=AGENT_PARAMS[name])
    agent.learn_until(steps // 5)  # warm-up: learning starts, cuda kernels load
    start, done = time.perf_counter(), agent.num_timesteps
    agent.learn_until(steps)
    fps = (agent.num_timesteps - done) / (time.perf_counter() - start)
    agent.close()
    return fps


def blocker_rate(labels: Path, device: str, epochs: int) -> tuple[float, dict]:
    """Labels per second of Blocker training on ``device``, and its test figures."""
    result = fit_blocker([labels], "pong", config=TrainConfig(epochs=epochs, patience=epochs, device=device,
                                                               progress=False), margin=0.01)
    summary = result.summary()
    trained = sum(len(net.history) * (len(result.folds.fitted) - len(fold))
                  for net, fold in zip(result.trained, result.folds.folds))
    return trained / summary["train_seconds"], summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="agent steps per timing")
    parser.add_argument("--labels", type=int, default=8000, help="labels to train the Blocker on")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    figures: dict = {"cuda": torch.cuda.is_available(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with tempfile.TemporaryDirectory() as tmp:
        labels = record_labels(Path(tmp) / "labels", args.labels)
        for device in devices:
            for name in AGENT_PARAMS:
                figures[f"{name}_fps_{device}"] = round(agent_fps(name, device, args.steps), 1)
            rate, summary = blocker_rate(labels, device, args.epochs)
            figures[f"blocker_labels_per_s_{device}"] = round(rate, 1)
            figures[f"blocker_test_fpr_{device}"] = summary["false_positive_rate"]
    if "cuda" in devices:
        for key in ("dqn_fps", "ppo_fps", "blocker_labels_per_s"):
            figures[f"{key}_cuda_over_cpu"] = round(figures[f"{key}_cuda"] / figures[f"{key}_cpu"], 2)
    else:
        print("no cuda here: only the CPU figures")
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
