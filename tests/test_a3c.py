"""A3C: real Pong, real worker processes, tiny budgets."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from saferl.agents.a3c import A3C, A3CConfig, ActorCritic, SharedAdam
from saferl.agents.a3c.worker import _train, n_step_returns
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.oversight.envs import make_agent_env
from saferl.registry import make_overseer

STEPS = 2_000


@dataclass(frozen=True)
class PongEnvs:
    """Worker ``rank``'s overseen Pong env (picklable: the workers are spawned)."""

    overseer: str = "scripted"
    seed: int = 0

    def __call__(self, rank: int) -> gym.Env:
        return make_agent_env(get_game("pong"), make_overseer(self.overseer, self.seed + rank), mode="replace",
                              penalty=-1.0, label_store=None, seed=self.seed + rank)


class Explodes(gym.Wrapper):
    """Raises from ``step`` after ``after`` steps."""

    def __init__(self, env: gym.Env, after: int) -> None:
        super().__init__(env)
        self.after, self.steps = after, 0

    def step(self, action: Any) -> Any:
        self.steps += 1
        if self.steps > self.after:
            raise RuntimeError("the emulator exploded")
        return self.env.step(action)


@dataclass(frozen=True)
class ExplodingPongEnvs:
    """Pong for every worker, but worker ``rank``'s env raises after ``after`` steps."""

    rank: int = 1
    after: int = 50

    def __call__(self, rank: int) -> gym.Env:
        env = PongEnvs()(rank)
        return Explodes(env, self.after) if rank == self.rank else env


@dataclass(frozen=True)
class RoadRunnerEnvs:
    """Road Runner (18 actions): does not fit an agent built for Pong (6 actions)."""

    def __call__(self, rank: int) -> gym.Env:
        return make_agent_env(get_game("road_runner"), None, seed=rank)


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM raises TimeoutError in the main thread after ``seconds``."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no result within {seconds} s: learn() hangs")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def weights(agent: A3C) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in agent.model.state_dict().items()}


def changed(before: dict[str, torch.Tensor], agent: A3C) -> list[str]:
    return [name for name, tensor in agent.model.state_dict().items() if not torch.equal(tensor, before[name])]


def pong_observations(n: int = 8) -> np.ndarray:
    env = PongEnvs()(0)
    obs, _ = env.reset()
    frames = [obs]
    for _ in range(n - 1):
        obs, *_ = env.step(env.action_space.sample())
        frames.append(obs)
    env.close()
    return np.stack(frames)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two workers on Pong under the scripted overseer for STEPS steps; what it looked like right after."""
    log_dir = tmp_path_factory.mktemp("a3c-tb")
    agent = A3C(PongEnvs("scripted"), A3CConfig(n_workers=2, seed=0), log_dir=str(log_dir))
    before = weights(agent)
    rows: list[dict] = []
    with deadline(120):
        agent.learn(STEPS, on_episode=rows.append)
    return {"agent": agent, "before": before, "rows": rows, "log_dir": log_dir,
            "num_timesteps": agent.num_timesteps, "totals": dict(agent.counters.totals),
            "episodes": list(agent.counters.episodes), "changed": changed(before, agent),
            "optimizer_steps": float(agent.optimizer.steps)}


@pytest.mark.slow
def test_learns_on_pong_under_scripted_oversight(trained: dict[str, Any]) -> None:
    totals = trained["totals"]
    assert trained["num_timesteps"] == STEPS  # the workers reserve steps from one global budget
    assert totals["steps"] == trained["num_timesteps"]
    assert totals["blocks"] > 0
    assert totals["catastrophes"] == 0  # replace mode: the rule blocks every catastrophe
    assert trained["changed"], "the shared model's weights did not change"
    assert trained["optimizer_steps"] >= STEPS / 20  # the shared optimizer state is seen by the main process
    # every episode row went to on_episode; the rows (the unfinished ones closed at the end) cover all steps
    assert trained["rows"] == trained["episodes"]
    assert sum(row["steps"] for row in trained["rows"]) == totals["steps"]
    assert sum(row["blocks"] for row in trained["rows"]) == totals["blocks"]
    assert {row["env_index"] for row in trained["rows"]} == {0, 1}
    # a Pong game lasts at least 764 steps, so the 2,000 steps end inside each worker's first or second game: the
    # stop cut that one short (its return is of part of a game), and only that one
    cuts = [[row["cut"] for row in trained["rows"] if row["env_index"] == rank] for rank in (0, 1)]
    assert all(worker == [0] * (len(worker) - 1) + [1] for worker in cuts)
    assert any(len(worker) >= 2 for worker in cuts), "some worker finished a game"


@pytest.mark.slow
def test_logs_to_tensorboard(trained: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained["log_dir"]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"safety/blocks", "safety/catastrophes", "train/policy_loss", "train/value_loss", "train/entropy",
            "time/fps", "rollout/episode_return"} <= tags
    assert events.Scalars("safety/steps")[-1].value == trained["totals"]["steps"]


@pytest.mark.slow
def test_second_learn_continues_steps_and_counters(trained: dict[str, Any]) -> None:
    agent: A3C = trained["agent"]
    start, totals, n_episodes = agent.num_timesteps, dict(agent.counters.totals), len(agent.counters.episodes)
    before = weights(agent)
    with deadline(120):
        agent.learn(600, env_factory=PongEnvs("none"))
    assert agent.num_timesteps == start + 600
    assert agent.counters.totals["steps"] == agent.num_timesteps
    assert agent.counters.totals["blocks"] == totals["blocks"]  # nobody oversees now
    assert agent.counters.totals["catastrophes"] >= totals["catastrophes"]
    assert len(agent.counters.episodes) > n_episodes
    assert changed(before, agent)
    assert isinstance(agent.env_factory, PongEnvs) and agent.env_factory.overseer == "none"


@pytest.mark.slow
def test_save_load_round_trip(trained: dict[str, Any], tmp_path: Path) -> None:
    agent: A3C = trained["agent"]
    obs = pong_observations()
    for target in (tmp_path / "agent", tmp_path / "file" / "pong.safetensors"):
        agent.save(target)
        loaded = A3C.load(target, PongEnvs())
        assert loaded.num_timesteps == agent.num_timesteps
        assert loaded.counters.totals == agent.counters.totals
        assert loaded.config == agent.config
        for name, tensor in agent.model.state_dict().items():
            assert torch.equal(tensor, loaded.model.state_dict()[name]), name
        for name, tensor in agent.optimizer.state_dict().items():
            assert torch.equal(tensor, loaded.optimizer.state_dict()[name]), name
        assert np.array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
        torch.manual_seed(1)
        sampled = agent.predict(obs)[0]
        torch.manual_seed(1)
        assert np.array_equal(sampled, loaded.predict(obs)[0])
    assert A3C.load(tmp_path / "agent", PongEnvs(), device="cpu").config.device == "cpu"
    single, state = agent.predict(obs[0])
    assert single.shape == () and state is None
    assert (tmp_path / "file" / "pong.json").is_file()
    metadata = json.loads((tmp_path / "agent" / "a3c.json").read_text())
    assert metadata["obs_shape"] == [4, 84, 84] and metadata["n_actions"] == 6
    assert metadata["num_timesteps"] == agent.num_timesteps


class MakesMarker:
    """A pickle that creates ``path`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.path), "w")


@pytest.mark.slow
def test_load_refuses_a_malicious_pickle_and_missing_files(trained: dict[str, Any], tmp_path: Path) -> None:
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(MakesMarker(proof))).close()
    assert proof.exists(), "the payload does not work, so the test would prove nothing"

    folder, marker = tmp_path / "agent", tmp_path / "pwned"
    trained["agent"].save(folder)
    weights_file = folder / "a3c.safetensors"
    weights_file.write_bytes(pickle.dumps(MakesMarker(marker)))
    with pytest.raises(SaferlError, match="a3c.safetensors"):
        A3C.load(folder, PongEnvs())
    assert not marker.exists()
    # the same with metadata that vouches for the pickle: the safetensors parser refuses it
    metadata_file = folder / "a3c.json"
    metadata = json.loads(metadata_file.read_text())
    import hashlib

    metadata["weights_sha256"] = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(SaferlError, match="a3c.safetensors"):
        A3C.load(folder, PongEnvs())
    assert not marker.exists()

    weights_file.unlink()
    with pytest.raises(SaferlError, match="a3c.safetensors"):
        A3C.load(folder, PongEnvs())
    metadata_file.write_text("{not json")
    with pytest.raises(SaferlError, match="a3c.json"):
        A3C.load(folder, PongEnvs())
    with pytest.raises(SaferlError, match="a3c.json"):
        A3C.load(tmp_path / "nothing-here", PongEnvs())


@pytest.mark.slow
def test_lstm_variant_learns() -> None:
    agent = A3C(PongEnvs("scripted", seed=3), A3CConfig(n_workers=2, n_steps=10, lstm=True, seed=3))
    before = weights(agent)
    with deadline(120):
        agent.learn(300)
    assert agent.num_timesteps == 300
    assert agent.counters.totals["steps"] == 300
    assert any(name.startswith("lstm.") for name in changed(before, agent))
    obs = pong_observations(3)
    actions, state = agent.predict(obs)
    assert actions.shape == (3,)
    assert state[0].shape == state[1].shape == (3, 256)
    actions, state = agent.predict(obs, state, deterministic=True)
    assert actions.shape == (3,) and state[0].shape == (3, 256)


@pytest.mark.slow
def test_worker_error_is_raised_not_hung() -> None:
    agent = A3C(ExplodingPongEnvs(rank=1, after=50), A3CConfig(n_workers=2))
    with deadline(60), pytest.raises(RuntimeError, match="worker 1 failed: the emulator exploded"):
        agent.learn(100_000)
    left = [p for p in multiprocessing.active_children() if p.name.startswith("a3c-worker")]
    assert not left, f"workers were left running: {left}"


@pytest.mark.slow
def test_env_that_does_not_fit_the_model_is_a_clear_error() -> None:
    agent = A3C(PongEnvs(), A3CConfig(n_workers=1))
    with deadline(60), pytest.raises(SaferlError, match=r"action space is Discrete\(18\).*Discrete\(6\)"):
        agent.learn(100, env_factory=RoadRunnerEnvs())
    assert agent.num_timesteps == 0 and agent.counters.totals["steps"] == 0


def test_unpicklable_factory_is_refused() -> None:
    factory = PongEnvs()
    agent = A3C(lambda rank: factory(rank), A3CConfig(n_workers=1))
    with pytest.raises(SaferlError, match="module-level function"):
        agent.learn(10)


@pytest.mark.parametrize("bad", [{"n_workers": 0}, {"n_steps": 0}, {"gamma": 1.5}, {"learning_rate": 0.0}])
def test_config_is_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(SaferlError, match=next(iter(bad))):
        A3CConfig(**bad)


def test_n_step_returns_by_hand() -> None:
    # gamma 0.9, rewards 1, 0, 2, bootstrapped from 0.5: R2 = 2 + 0.45, R1 = 0.9 * 2.45, R0 = 1 + 0.9 * 2.205
    assert n_step_returns([1.0, 0.0, 2.0], 0.5, 0.9).tolist() == pytest.approx([2.9845, 2.205, 2.45])
    assert n_step_returns([1.0, 0.0, 2.0], 0.0, 1.0).tolist() == pytest.approx([3.0, 2.0, 2.0])
    assert n_step_returns([], 0.7, 0.9).tolist() == []


class FiveRewards(gym.Env):
    """A 5-step episode of blank 1x20x20 frames with rewards 1, 0, 2, -1, 3; remembers the actions it was given."""

    observation_space = gym.spaces.Box(0, 255, (1, 20, 20), np.uint8)
    action_space = gym.spaces.Discrete(3)
    REWARDS = (1.0, 0.0, 2.0, -1.0, 3.0)

    def __init__(self) -> None:
        self.actions: list[int] = []  # this episode's
        self.given: list[int] = []  # all

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        self.actions = []
        return np.zeros((1, 20, 20), np.uint8), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.actions.append(int(action))
        self.given.append(int(action))
        t = len(self.actions) - 1
        info = {"catastrophe": False, "blocked": False}
        return np.zeros((1, 20, 20), np.uint8), self.REWARDS[t], t == 4, False, info


class Messages(list):
    put = list.append


def test_a_workers_losses_equal_the_hand_computed_ones() -> None:
    """A network with fixed logits (0, 1, 2) and value 0.5 on every frame, rollouts of 3 steps over a 5-step episode:
    the first rollout bootstraps from the value 0.5, the second ends at the terminal state (bootstrap 0).
    policy loss = -sum log pi(a_t) (R_t - V), value loss = 0.5 sum (R_t - V)^2, entropy summed; each reported per step.
    """
    torch.manual_seed(0)
    shared = ActorCritic((1, 20, 20), 3)
    with torch.no_grad():
        shared.policy.weight.zero_()
        shared.policy.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
        shared.value.weight.zero_()
        shared.value.bias.fill_(0.5)
    config = A3CConfig(n_workers=1, n_steps=3, gamma=0.9, learning_rate=1e-12, entropy_coef=0.01, value_coef=0.5)
    optimizer = SharedAdam(shared.parameters(), lr=config.learning_rate)
    env, messages, counter = FiveRewards(), Messages(), multiprocessing.Value("i", 0)
    _train(0, config, env, shared, optimizer, counter, 5, messages, lambda: False)

    rollouts = [m for m in messages if m["kind"] == "rollout"]
    assert len(rollouts) == 2 and counter.value == 5 and float(optimizer.steps) == 2
    log_pi = np.log(np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum())
    entropy = -(np.exp(log_pi) * log_pi).sum()
    # rewards 1, 0, 2 bootstrapped from 0.5: 2 + 0.45, 0.9 * 2.45, 1 + 0.9 * 2.205; then -1, 3 to the end: -1 + 2.7, 3
    returns = [[2.9845, 2.205, 2.45], [1.7, 3.0]]
    for rollout, rewards_to_go, actions in zip(rollouts, returns, (env.given[:3], env.given[3:])):
        advantages = np.array(rewards_to_go) - 0.5
        n = len(actions)
        assert rollout["policy_loss"] == pytest.approx(-(log_pi[actions] * advantages).sum() / n, rel=1e-5)
        assert rollout["value_loss"] == pytest.approx(0.5 * (advantages ** 2).sum() / n, rel=1e-5)
        assert rollout["entropy"] == pytest.approx(entropy, rel=1e-5)
    assert rollouts[0]["episode_return"] is None and rollouts[1]["episode_return"] == 5.0
