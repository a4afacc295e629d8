"""SB3 agents under oversight: real Pong, tiny budgets, the hand-over between overseers, safe save and load."""

import pickle

import numpy as np
import pytest
import torch

from saferl.agents import OversightSpec, load_hyperparams, make_agent
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.labels.store import LabelStore

PONG = get_game("pong")
TINY = {
    "dqn": {"n_envs": 2, "buffer_size": 1000, "learning_starts": 100, "train_freq": 4},
    "a2c": {"n_envs": 2, "n_steps": 8},
    "ppo": {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_agent_learns_under_oversight_and_hands_over_without_reset(name, tmp_path):
    torch.set_num_threads(1)
    human = OversightSpec("scripted", "replace", -1.0, str(tmp_path / "labels"))
    agent = make_agent(name, PONG, 1500, human, seed=0, hyperparams=TINY[name], with_frame=True)
    before = [p.detach().clone() for p in agent.model.policy.parameters()]
    agent.learn_until(300)
    totals = dict(agent.counters.totals)
    assert 300 <= agent.num_timesteps < 300 + 64
    assert totals["steps"] == agent.num_timesteps
    assert totals["blocks"] > 0 and totals["catastrophes"] == 0, "the scripted rule blocks every catastrophe"
    assert totals["labels"] == totals["steps"]
    agent.set_oversight(OversightSpec("none", "observe"))
    agent.learn_until(1500)
    assert agent.counters.totals["steps"] == agent.num_timesteps >= 1500
    assert agent.counters.totals["labels"] == totals["labels"], "no labels once the human stops"
    assert agent.counters.totals["catastrophes"] > 0, "nobody blocks: a learning Pong agent meets the bottom"
    changed = [not torch.equal(a, b) for a, b in zip(before, agent.model.policy.parameters())]
    assert any(changed), "the agent learned"
    with LabelStore.open(tmp_path / "labels") as store:
        assert len(store) == totals["labels"]
    agent.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["a2c", "ppo"])
def test_on_policy_agents_train_on_every_rollout_across_stops_with_schedules_over_the_run(name):
    """SB3 drops a rollout that a callback cuts short untrained: a stop (checkpoint, hand-over) must not cost one."""
    torch.set_num_threads(1)
    agent = make_agent(name, PONG, 1000, OversightSpec("none", "observe"), seed=0, hyperparams=TINY[name])
    rollout = agent.model.n_steps * agent.model.n_envs
    for stop in (rollout, 2 * rollout, 2 * rollout + 1):
        agent.learn_until(stop)
        assert agent.num_timesteps == -(-stop // rollout) * rollout, "on to the end of the rollout, no further"
    rollouts = agent.num_timesteps // rollout
    assert agent.model._n_updates == rollouts * getattr(agent.model, "n_epochs", 1), "every rollout was trained on"
    assert agent.model._current_progress_remaining == pytest.approx(1 - agent.num_timesteps / 1000)
    agent.close()


@pytest.mark.slow
def test_saved_agent_resumes_with_weights_counters_and_replay_buffer(tmp_path):
    spec = OversightSpec("scripted", "replace")
    agent = make_agent("dqn", PONG, 400, spec, seed=1, hyperparams=TINY["dqn"])
    agent.learn_until(200)
    agent.save(tmp_path / "ck")
    again = make_agent("dqn", PONG, 400, spec, seed=2, hyperparams=TINY["dqn"])
    again.load(tmp_path / "ck")
    assert again.num_timesteps == agent.num_timesteps
    assert again.model.replay_buffer.pos == agent.model.replay_buffer.pos
    np.testing.assert_array_equal(again.model.replay_buffer.observations, agent.model.replay_buffer.observations)
    obs = np.random.default_rng(0).integers(0, 255, (3, 4, 84, 84), dtype=np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(again.model.predict(obs, deterministic=True)[0],
                                  agent.model.predict(obs, deterministic=True)[0])
    again.learn_until(400)
    assert again.num_timesteps >= 400
    agent.close()
    again.close()


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/saferl-agent-pwned",))


@pytest.mark.slow
def test_loading_refuses_a_pickle_in_place_of_the_weights(tmp_path):
    import os

    agent = make_agent("dqn", PONG, 400, OversightSpec(), seed=0, hyperparams=TINY["dqn"])
    agent.save(tmp_path / "ck")
    (tmp_path / "ck" / "params.pt").write_bytes(pickle.dumps({"policy": _Exploit()}))
    with pytest.raises(SaferlError, match="params.pt|cannot resume"):
        agent.load(tmp_path / "ck")
    assert not os.path.exists("/tmp/saferl-agent-pwned")
    agent.close()


def test_hyperparams_come_from_yaml_with_overrides_and_unknown_agents_are_refused():
    params = load_hyperparams("ppo", "pong", {"n_envs": 2})
    assert params["n_steps"] == 128 and params["n_envs"] == 2 and params["learning_rate"] == "lin_2.5e-4"
    with pytest.raises(SaferlError, match="--agent"):
        load_hyperparams("sarsa")


@pytest.mark.slow
def test_a3c_agent_labels_per_worker_then_hands_over(tmp_path):
    from saferl.agents import label_stores

    human = OversightSpec("scripted", "replace", -1.0, str(tmp_path / "labels"))
    agent = make_agent("a3c", PONG, 1200, human, seed=0, hyperparams={"n_workers": 2, "lstm": False})
    agent.learn_until(600)
    totals = dict(agent.counters.totals)
    assert totals["steps"] == agent.num_timesteps == 600
    assert totals["blocks"] > 0 and totals["catastrophes"] == 0
    stores = label_stores(tmp_path / "labels")
    assert [p.name for p in stores] == ["worker-0", "worker-1"]
    assert sum(len(LabelStore.open(p)) for p in stores) == totals["labels"] == 600
    agent.save(tmp_path / "ck")
    agent.set_oversight(OversightSpec("none", "observe"))
    agent.load(tmp_path / "ck")
    agent.learn_until(1200)
    assert agent.counters.totals["steps"] == 1200 and agent.counters.totals["labels"] == 600
    agent.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["a2c", "ppo"])
def test_on_policy_agents_resume_where_they_stopped(name, tmp_path):
    """Saved after two rollouts and loaded into an agent of another seed: the steps, weights and optimizer state are
    the saved ones, and learning goes on from there (one more rollout), not from a fresh start. (The safety counters
    are the experiment's checkpoint's, see tests/test_pipeline.py.)"""
    torch.set_num_threads(1)
    spec = OversightSpec("scripted", "replace")
    agent = make_agent(name, PONG, 1000, spec, seed=1, hyperparams=TINY[name])
    rollout = agent.model.n_steps * agent.model.n_envs
    agent.learn_until(2 * rollout)
    agent.save(tmp_path / "ck")
    saved = {key: value.clone() for key, value in agent.model.policy.state_dict().items()}
    optimizer = agent.model.policy.optimizer.state_dict()
    again = make_agent(name, PONG, 1000, spec, seed=2, hyperparams=TINY[name])
    fresh = {key: value.clone() for key, value in again.model.policy.state_dict().items()}
    assert any(not torch.equal(fresh[key], saved[key]) for key in saved), "another seed starts elsewhere"
    again.load(tmp_path / "ck")
    assert again.num_timesteps == 2 * rollout
    assert all(torch.equal(again.model.policy.state_dict()[key], value) for key, value in saved.items())
    moments = again.model.policy.optimizer.state_dict()["state"]
    assert moments and all(torch.equal(moments[k][name_], value) for k, state in optimizer["state"].items()
                           for name_, value in state.items() if torch.is_tensor(value))
    again.learn_until(3 * rollout)
    assert again.num_timesteps == 3 * rollout, "one more rollout, counted on from the checkpoint"
    assert any(not torch.equal(again.model.policy.state_dict()[key], saved[key]) for key in saved), "it trained on"
    agent.close()
    again.close()
