"""The look-ahead overseer: exact replay on the ALE, and a perfect record on Pong."""

import numpy as np
import pytest

from rollouts import random_policy_totals
from saferl.env.ale import make_ale_env
from saferl.env.ground_truth import GroundTruthWrapper
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.games.pong import CATASTROPHE_BELOW, paddle_bottom
from saferl.oversight import LookaheadOverseer, ScriptedOverseer, StepContext

PONG = get_game("pong")


@pytest.mark.slow
@pytest.mark.parametrize("sticky", [0.0, 0.25])
def test_stepping_after_a_review_gives_the_same_frames_and_ram_as_without_one(sticky):
    plain = make_ale_env(PONG, seed=5, repeat_action_probability=sticky)
    reviewed = GroundTruthWrapper(make_ale_env(PONG, seed=5, repeat_action_probability=sticky), PONG)
    plain.reset(seed=5)
    reviewed.reset(seed=5)
    overseer = LookaheadOverseer(horizon=4)
    rng = np.random.default_rng(0)
    for step in range(600):
        action = int(rng.integers(6))
        context = StepContext(PONG, reviewed.game_state, emulator=reviewed.emulator)
        overseer.review(context, (action + 1) % 6)  # simulate other futures than the one taken
        reviewed.would_be_catastrophe((action + 3) % 6)
        frame_a, *_ = plain.step(action)
        frame_b, *_ = reviewed.step(action)
        assert np.array_equal(frame_a, frame_b), f"frames diverged at step {step}"
        assert np.array_equal(plain.unwrapped.ale.getRAM(), reviewed.unwrapped.ale.getRAM())


@pytest.mark.slow
def test_lookahead_lets_no_catastrophe_through_and_blocks_less_than_the_rule():
    lookahead = random_policy_totals(PONG, LookaheadOverseer(), seed=2, steps=1500)
    rule = random_policy_totals(PONG, ScriptedOverseer(), seed=2, steps=1500)
    bare = random_policy_totals(PONG, None, seed=2, steps=1500)
    assert bare["catastrophes"] > 0
    assert lookahead["catastrophes"] == 0
    assert 0 < lookahead["blocks"] < rule["blocks"]


@pytest.mark.slow
def test_preferring_noop_lets_the_paddle_sit_below_the_rules_zone_and_nothing_through():
    """Without sticky actions, ``prefer=[0]`` replaces a dangerous move with NOOP wherever NOOP is safe: the paddle
    stays low, below the rule's zone edge, where UP would push it away, and still never crosses the line."""
    game = get_game("pong_no_sticky")
    env = GroundTruthWrapper(make_ale_env(game, seed=3), game)
    env.reset(seed=3)
    overseer = LookaheadOverseer(prefer=[0])
    rng = np.random.default_rng(3)
    replacements, catastrophes, bottoms = [], 0, []
    for _ in range(3000):
        action = int(rng.integers(6))
        decision = overseer.review(StepContext(game, env.game_state, emulator=env.emulator), action)
        if decision.block:
            replacements.append(decision.safe_action)
            action = decision.safe_action
        _, _, terminated, truncated, info = env.step(action)
        catastrophes += info["catastrophe"]
        bottoms.append(paddle_bottom(env.game_state))
        if terminated or truncated:
            env.reset()
    assert catastrophes == 0
    assert replacements.count(0) > len(replacements) / 2 > 20, "most replacements are NOOP"
    assert max(bottoms) > game.block_below + 16, "the paddle goes well below where the rule stops it"
    assert max(bottoms) <= CATASTROPHE_BELOW


def test_a_preferred_action_the_game_lacks_is_refused_by_name_at_the_first_block():
    game = get_game("pong_no_sticky")
    env = GroundTruthWrapper(make_ale_env(game, seed=1), game)
    env.reset(seed=1)
    overseer = LookaheadOverseer(prefer=[9])
    with pytest.raises(SaferlError, match="prefer names action 9, but the game has 6 actions"):
        for _ in range(300):  # hold DOWN until the paddle nears the line and a move must be replaced
            overseer.review(StepContext(game, env.game_state, emulator=env.emulator), 3)
            env.step(3)
