"""What saferl takes from its dependencies beyond their documented API, checked so that an upgrade fails here, loudly,
rather than quietly changing results: SB3's private counters and progress hook (saferl/agents/sb3_internals.py), and
the public replacements of ale-py's and gymnasium's private attributes agreeing with what those held."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, PPO

from saferl.agents import sb3_internals
from saferl.env.agent_view import AgentView
from saferl.env.ale import make_ale_env
from saferl.env.ground_truth import GroundTruthWrapper
from saferl.games import GAMES, get_game


@pytest.mark.parametrize("algorithm", [PPO, DQN])
def test_sb3_still_has_the_private_attributes_saferl_sets(algorithm):
    model = algorithm("MlpPolicy", "CartPole-v1", seed=0, **({"n_steps": 32, "batch_size": 32} if algorithm is PPO
                                                           else {"learning_starts": 10, "train_freq": 4}))
    sb3_internals.check(model)
    calls = []
    sb3_internals.progress_over_run(model, total_steps=1_000)
    hook = model._update_current_progress_remaining
    model._update_current_progress_remaining = lambda done, total: calls.append(done) or hook(done, total)
    model.learn(64)
    assert calls, "SB3 no longer calls _update_current_progress_remaining during learn"
    assert model._current_progress_remaining == pytest.approx(1 - model.num_timesteps / 1_000)
    n_updates, episodes = sb3_internals.counters(model)
    assert n_updates > 0, "SB3 no longer counts updates where saferl reads them"
    assert episodes > 0 or algorithm is PPO, "SB3's off-policy algorithms no longer count episodes there"
    sb3_internals.restore_counters(model, 123, 45)
    model.learn(32, reset_num_timesteps=False)
    assert sb3_internals.counters(model)[0] > 123 and sb3_internals.counters(model)[1] >= 45


def test_check_names_the_missing_attribute():
    class Bare:
        pass

    with pytest.raises(Exception, match="_episode_num"):
        sb3_internals.check(Bare())


@pytest.mark.parametrize("name", sorted(GAMES))
def test_the_emulators_action_set_is_the_one_ale_py_keeps_privately(name):
    game = get_game(name)
    env = make_ale_env(game, seed=0)
    assert env.num_actions == len(env.unwrapped._action_set) == env.action_space.n
    for action in range(env.num_actions):  # every action reaches ALE as ale-py itself would send it
        assert env._action_set[action] == env.unwrapped._action_set[action]
    env.close()


def test_the_agent_view_equals_gymnasiums_atari_preprocessing_frame_by_frame():
    game = get_game("pong")
    ours = AgentView(GroundTruthWrapper(make_ale_env(game, seed=3), game))
    theirs = gym.wrappers.AtariPreprocessing(GroundTruthWrapper(make_ale_env(game, seed=3), game), noop_max=0,
                                             frame_skip=1, screen_size=84)
    a, _ = ours.reset(seed=3)
    b, _ = theirs.reset(seed=3)
    assert np.array_equal(a, b)
    rng = np.random.default_rng(0)
    for _ in range(300):
        action = int(rng.integers(6))
        a, _, done_a, trunc_a, _ = ours.step(action)
        b, _, done_b, trunc_b, _ = theirs.step(action)
        if done_a or trunc_a:
            break
        assert np.array_equal(a, b)
