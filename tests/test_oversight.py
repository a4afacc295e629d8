"""The oversight wrapper: modes, info, penalty, and the property that blocked actions never run."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saferl.env.ground_truth import HOLD
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.oversight import ScriptedOverseer
from saferl.oversight.envs import make_agent_env, make_overseen_env

PONG = get_game("pong")
INFO_KEYS = {"proposed_action", "executed_action", "blocked", "catastrophe", "score", "false_negative", "false_positive"}


def overseen(mode, overseer, seed=0, penalty=-1.0):
    env = make_overseen_env(PONG, overseer, mode=mode, penalty=penalty, seed=seed)
    env.reset(seed=seed)
    return env


def test_info_carries_the_decision_and_the_agent_keeps_its_proposed_action():
    env = overseen("replace", ScriptedOverseer(false_positive_rate=1.0))
    _, reward, _, _, info = env.step(3)
    assert INFO_KEYS <= info.keys()
    assert info["proposed_action"] == 3 and info["blocked"]
    assert info["executed_action"] != 3
    assert reward == -1.0


def test_prune_leaves_the_env_where_it_was_and_returns_the_same_observation():
    env = overseen("prune", ScriptedOverseer(false_positive_rate=1.0))
    for _ in range(5):
        env.step(0)  # the first steps are pruned too: all blocked
    ram = env.unwrapped.ale.getRAM().copy()
    obs_before = env.ground_truth._last[0]
    obs, reward, terminated, truncated, info = env.step(3)
    assert info["executed_action"] == HOLD and info["blocked"]
    assert np.array_equal(obs, obs_before)
    assert np.array_equal(env.unwrapped.ale.getRAM(), ram)
    assert reward == -1.0 and not terminated and not truncated


def test_a_held_step_shows_the_agent_where_the_env_is_not_the_simulated_frame():
    """A pruned action's counterfactual leaves ALE's screen at the simulated frame, and AtariPreprocessing reads
    the screen: the agent's observation of a held step must still be the frame the env is at."""
    env = make_agent_env(PONG, ScriptedOverseer(false_positive_rate=1.0), mode="prune", seed=0, frame_stack=1)
    obs, _ = env.reset(seed=0)
    holds = 0
    for _ in range(120):
        before = obs
        obs, _, _, _, info = env.step(2)
        if info["executed_action"] == HOLD:
            holds += 1
            assert np.array_equal(obs, before)
    assert holds > 50
    env.close()


def test_prune_gives_way_to_a_safe_action_after_max_prunes():
    env = overseen("prune", ScriptedOverseer(false_positive_rate=1.0))
    env.intervention.max_prunes = 3
    executed = [env.step(3)[4]["executed_action"] for _ in range(4)]
    assert executed[:3] == [HOLD] * 3 and executed[3] not in (HOLD, 3)


def test_penalty_only_executes_the_proposed_action_and_observe_changes_nothing():
    shaped = overseen("penalty_only", ScriptedOverseer(false_positive_rate=1.0), penalty=-0.5)
    _, reward, _, _, info = shaped.step(3)
    assert info["blocked"] and info["executed_action"] == 3 and reward == -0.5
    watched = overseen("observe", ScriptedOverseer(false_positive_rate=1.0))
    _, reward, _, _, info = watched.step(3)
    assert info["blocked"] and info["executed_action"] == 3 and reward == 0.0


def test_unknown_mode_and_bad_penalty_are_refused_with_the_argument_named():
    with pytest.raises(SaferlError, match="--mode"):
        overseen("smash", None)
    with pytest.raises(SaferlError, match="--penalty"):
        overseen("replace", None, penalty=float("nan"))


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["replace", "prune"]),
    fp=st.floats(0.0, 1.0),
    fn=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    actions=st.lists(st.integers(0, 5), min_size=1, max_size=120),
)
def test_blocked_actions_are_never_executed_and_counters_add_up(mode, fp, fn, seed, actions):
    env = overseen(mode, ScriptedOverseer(false_positive_rate=fp, false_negative_rate=fn, seed=seed), seed=seed)
    seen = {"steps": 0, "catastrophes": 0, "blocks": 0, "false_negatives": 0, "false_positives": 0}
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
        assert info["proposed_action"] == action
        if info["blocked"]:
            assert info["executed_action"] != action
        else:
            assert info["executed_action"] == action
            assert not info["false_positive"]
        if info["executed_action"] == HOLD:
            assert not info["catastrophe"]
        seen["steps"] += 1
        seen["catastrophes"] += info["catastrophe"]
        seen["blocks"] += info["blocked"]
        seen["false_negatives"] += info["false_negative"]
        seen["false_positives"] += info["false_positive"]
        assert info["false_negative"] == (info["catastrophe"] and not info["blocked"])
        if terminated or truncated:
            env.reset()
    totals = env.counters.totals
    assert {key: totals[key] for key in seen} == seen
    env.close()
    assert sum(row["steps"] for row in env.counters.episodes) == len(actions)


@pytest.mark.slow
def test_scripted_noise_is_seeded_and_at_the_asked_rates_and_labour_is_counted(tmp_path):
    from saferl.labels.store import LabelStore

    def run(seed):
        store = LabelStore.create(tmp_path / f"labels-{seed}-{len(list(tmp_path.iterdir()))}", "pong", PONG_ACTIONS)
        overseer = ScriptedOverseer(false_positive_rate=0.2, false_negative_rate=0.5, seconds_per_decision=0.5, seed=seed)
        env = make_overseen_env(PONG, overseer, label_store=store, seed=0)
        env.reset(seed=0)
        rule_blocks = noisy_blocks = rule_allows = noisy_allows = 0
        for _ in range(1500):
            rule = PONG.should_block(env.ground_truth.game_state, 3)
            _, _, terminated, truncated, info = env.step(3)
            if rule:
                rule_blocks += 1
                noisy_blocks += info["blocked"]
            else:
                rule_allows += 1
                noisy_allows += not info["blocked"]
            if terminated or truncated:
                env.reset()
        return store, rule_blocks, noisy_blocks, rule_allows, noisy_allows

    store, rule_blocks, noisy_blocks, rule_allows, noisy_allows = run(seed=7)
    assert 0.35 < noisy_blocks / rule_blocks < 0.65  # half of the rule's blocks are dropped
    assert 0.70 < noisy_allows / rule_allows < 0.90  # a fifth of its passes are blocked
    assert store.summary()["human_seconds"] == 1500 * 0.5
    again = run(seed=7)[0]
    assert np.array_equal(store.arrays()["blocked"], again.arrays()["blocked"])


PONG_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
