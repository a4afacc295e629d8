"""The look-ahead overseer: exact replay on the ALE, and a perfect record on Pong."""

import numpy as np
import pytest

from rollouts import random_policy_totals
from saferl.env.ale import make_ale_env
from saferl.env.ground_truth import GroundTruthWrapper
from saferl.games import get_game
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
