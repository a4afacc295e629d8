"""Checkpoints on real Pong runs: sized by what the replay buffer holds, restored exactly, and refused with one
clear line (exit 2, files untouched) when any of their files is damaged."""

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from saferl.agents import OversightSpec, make_agent
from saferl.agents.a3c import A3C, A3CConfig
from saferl.agents.sb3_agent import REPLAY_ARRAYS, SB3Agent
from saferl.cli import main
from saferl.errors import SaferlError
from saferl.experiment import ExperimentConfig, run_experiment
from saferl.games import get_game
from saferl.oversight.envs import make_agent_env
from saferl.registry import make_overseer

PONG = get_game("pong")
STOP_AT = 200  # the run is interrupted here, between its checkpoints at 100 and 300
MB = 2**20


def run_arrays(agent: SB3Agent) -> dict[str, np.ndarray]:
    """Copies of the agent's replay buffer: the filled rows of each array (one more observation with
    ``optimize_memory_usage``), pos and full."""
    buffer = agent.model.replay_buffer
    rows = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name)[:rows].copy() for name in REPLAY_ARRAYS if hasattr(buffer, name)}
    if buffer.optimize_memory_usage and not buffer.full and rows:
        arrays["observations"] = buffer.observations[:rows + 1].copy()
    return {**arrays, "pos": np.int64(buffer.pos), "full": np.bool_(buffer.full)}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A 300-step DQN run of Pong with the default hyperparameters (a 100,000-transition buffer), stopped as by
    Ctrl-C at step 200 (after its checkpoint at step 100); with the replay buffer as it was at the stop."""
    root = tmp_path_factory.mktemp("interrupted") / "run"
    config = ExperimentConfig.from_dict({"game": "pong", "agent": "dqn", "conditions": "none", "oversight_steps": 150,
                                         "total_steps": 300, "checkpoint_every": 100})
    learn_until, seen = SB3Agent.learn_until, {}

    def learn_then_stop(self, step, *args, **kwargs):
        learn_until(self, step, *args, **kwargs)
        if self.num_timesteps >= STOP_AT:
            seen.update(run_arrays(self))
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SB3Agent, "learn_until", learn_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(config, root, progress=False)
    return root, seen


def copy_run(interrupted, tmp_path) -> tuple[Path, Path]:
    """A copy of the interrupted run folder and its checkpoint's agent folder."""
    root = tmp_path / "run"
    shutil.copytree(interrupted[0], root)
    return root, root / "runs" / "none" / "seed-0" / "checkpoint"


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.mark.slow
def test_a_checkpoint_holds_the_filled_part_of_the_replay_buffer_compressed(interrupted, tmp_path):
    _, checkpoint = copy_run(interrupted, tmp_path)
    replay = checkpoint / "agent" / "replay.npz"
    with zipfile.ZipFile(replay) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    pos = int(interrupted[1]["pos"])
    assert STOP_AT - 5 < pos <= STOP_AT  # a transition per stop (checkpoint, handover) is not stored: SB3's way
    with np.load(replay, allow_pickle=False) as saved:
        assert int(saved["pos"]) == pos and not saved["full"]
        assert {name: saved[name].shape[0] for name in REPLAY_ARRAYS} == dict.fromkeys(REPLAY_ARRAYS, pos)
    # the weights (the Q-network and its target, 13 MB as float32) are most of it; 200 transitions are kilobytes
    assert replay.stat().st_size < 1 * MB
    assert folder_bytes(checkpoint) < 10 * MB + (checkpoint / "agent" / "params.pt").stat().st_size


def test_resuming_restores_the_replay_buffer_exactly(interrupted, tmp_path):
    root, checkpoint = copy_run(interrupted, tmp_path)
    hyperparams = json.loads((root / "config.json").read_text())["hyperparams"]
    agent = make_agent("dqn", PONG, 300, OversightSpec(), seed=5, hyperparams=hyperparams)
    try:
        agent.load(checkpoint / "agent")
        restored = run_arrays(agent)
    finally:
        agent.close()
    saved = interrupted[1]
    assert set(restored) == set(saved) and int(restored["pos"]) > STOP_AT - 5
    for name, array in saved.items():
        np.testing.assert_array_equal(restored[name], array, err_msg=name)
    assert saved["observations"].any(), "the run stored frames: the comparison compares something"


@pytest.mark.slow
@pytest.mark.parametrize("hyperparams", [
    {"buffer_size": 100},  # 50 rows for 2 envs: 130 steps wrap around it
    {"buffer_size": 1000, "optimize_memory_usage": True, "replay_buffer_kwargs": {"handle_timeout_termination": False}},
], ids=["wrapped", "memory-optimized"])
def test_a_restored_buffer_samples_and_overwrites_as_the_saved_one_would(tmp_path, hyperparams):
    hyperparams = {"n_envs": 2, "backend": "dummy", "learning_starts": 10_000, **hyperparams}
    agents = [make_agent("dqn", PONG, 1000, OversightSpec(), seed=seed, hyperparams=hyperparams) for seed in (0, 1)]
    saved, restored = agents
    try:
        saved.learn_until(130)
        saved.save(tmp_path / "ck")
        restored.load(tmp_path / "ck")
        buffers = [agent.model.replay_buffer for agent in agents]
        assert buffers[0].full == ("optimize_memory_usage" not in hyperparams)
        samples = []
        for buffer in buffers:
            np.random.seed(3)
            samples.append(buffer.sample(64))
        for got, want in zip(samples[1], samples[0]):
            assert got is want is None or torch.equal(got, want)
        rng = np.random.default_rng(0)
        for _ in range(60):  # past the end of the buffer: overwriting goes on where it stopped
            transition = (*(rng.integers(0, 255, (2, 4, 84, 84), dtype=np.uint8) for _ in range(2)),
                          rng.integers(0, 6, 2), rng.random(2), rng.integers(0, 2, 2), [{}, {}])
            for buffer in buffers:
                buffer.add(*transition)
        for name in ("pos", "full", *REPLAY_ARRAYS):
            if hasattr(buffers[0], name):
                np.testing.assert_array_equal(getattr(buffers[1], name), getattr(buffers[0], name), err_msg=name)
    finally:
        for agent in agents:
            agent.close()


def rewrite_replay(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    change(arrays)
    np.savez(path, **arrays)  # allow_pickle is on when saving: an object array goes in as a pickle


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def nan_weight(path: Path) -> None:
    params = torch.load(path, weights_only=True)
    next(iter(params["policy"].values())).view(-1)[0] = float("nan")
    torch.save(params, path)


DAMAGE = {
    "state-empty-object": ("state.json", lambda p: p.write_text("{}")),
    "state-list": ("state.json", lambda p: p.write_text("[]")),
    "state-nan-total": ("state.json", lambda p: edit_json(p, lambda d: d["totals"].update(catastrophes=float("nan")))),
    "state-missing-total": ("state.json", lambda p: edit_json(p, lambda d: d["totals"].pop("blocks"))),
    "state-phase-past-the-end": ("state.json", lambda p: edit_json(p, lambda d: d.update(phase=1))),
    "state-not-json": ("state.json", lambda p: p.write_text('{"phase": 0,')),
    "replay-wrong-shape": ("agent/replay.npz",
                           lambda p: rewrite_replay(p, lambda a: a.update(observations=a["observations"][..., :80]))),
    "replay-extra-rows": ("agent/replay.npz", lambda p: rewrite_replay(p, lambda a: a.update(
        rewards=np.concatenate([a["rewards"], a["rewards"]])))),
    "replay-object-array": ("agent/replay.npz",
                            lambda p: rewrite_replay(p, lambda a: a.update(rewards=a["rewards"].astype(object)))),
    "replay-missing-array": ("agent/replay.npz", lambda p: rewrite_replay(p, lambda a: a.pop("dones"))),
    "replay-pos-outside": ("agent/replay.npz", lambda p: rewrite_replay(p, lambda a: a.update(pos=np.int64(10**6)))),
    "replay-truncated": ("agent/replay.npz", lambda p: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])),
    "agent-json-missing-key": ("agent/agent.json", lambda p: edit_json(p, lambda d: d.pop("n_updates"))),
    "agent-json-negative": ("agent/agent.json", lambda p: edit_json(p, lambda d: d.update(num_timesteps=-5))),
    "params-random-bytes": ("agent/params.pt", lambda p: p.write_bytes(os.urandom(4096))),
    "params-nan-weight": ("agent/params.pt", nan_weight),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_in_one_line_and_left_as_it_was(interrupted, tmp_path, capsys, case):
    root, checkpoint = copy_run(interrupted, tmp_path)
    name, damage = DAMAGE[case]
    damage(checkpoint / name)
    before = {path: path.read_bytes() for path in sorted(checkpoint.rglob("*")) if path.is_file()}

    assert main(["experiment", "--resume", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert Path(name).name in err and f"delete {root / 'runs' / 'none' / 'seed-0'} to start this run afresh" in err
    assert {path: path.read_bytes() for path in sorted(checkpoint.rglob("*")) if path.is_file()} == before
    assert not (root / "runs" / "none" / "seed-0" / "summary.json").exists()


@pytest.mark.slow
def test_the_resumed_run_finishes_with_no_repeated_curve_row_and_reports_its_largest_checkpoint(interrupted, tmp_path):
    root, checkpoint = copy_run(interrupted, tmp_path)
    size_at_stop = folder_bytes(checkpoint)
    assert main(["experiment", "--resume", str(root), "--no-progress"]) == 0
    folder = root / "runs" / "none" / "seed-0"
    lines = (folder / "curve.csv").read_text().splitlines()[1:]
    steps = [int(line.split(",")[0]) for line in lines]
    assert len(set(lines)) == len(lines), "a curve row written twice"
    assert steps == sorted(set(steps)) and steps[-1] == 300 and 100 in steps and STOP_AT in steps
    summary = json.loads((folder / "summary.json").read_text())
    assert not (checkpoint / "agent" / "replay.npz").exists(), "a finished run keeps only the weights"
    assert summary["checkpoint_bytes"] > size_at_stop > folder_bytes(checkpoint), "the step-300 save, replay included"
    assert summary["checkpoint_bytes"] < 10 * MB + (checkpoint / "agent" / "params.pt").stat().st_size


@dataclass(frozen=True)
class PongEnv:
    """Worker ``rank``'s Pong env, not overseen (picklable, as A3C's workers are spawned)."""

    def __call__(self, rank: int):
        return make_agent_env(PONG, make_overseer("none", rank), mode="observe", penalty=-1.0, label_store=None,
                              seed=rank)


@pytest.mark.parametrize("change", [
    lambda d: d["safety_totals"].update(catastrophes=float("nan")),
    lambda d: d.pop("n_actions"),
    lambda d: d["config"].update(n_workers="2"),
    lambda d: d["config"].update(gamma=2.0),
    lambda d: d.update(obs_shape=[4, 84]),
    lambda d: d.update(num_timesteps=True),
], ids=["nan-total", "missing-key", "string-workers", "gamma-out-of-range", "short-shape", "bool-steps"])
def test_a3c_metadata_is_checked_before_its_weights_are_loaded(tmp_path, change):
    folder = tmp_path / "a3c"
    A3C(PongEnv(), A3CConfig(n_workers=1)).save(folder)
    A3C.load(folder, PongEnv())
    edit_json(folder / "a3c.json", change)
    with pytest.raises(SaferlError, match="a3c.json") as err:
        A3C.load(folder, PongEnv())
    assert "\n" not in str(err.value)
