"""saferl's Emulator against ALE's own ``ALE/Pong-v5``: frameskip and sticky actions applied by saferl must behave as
ALE applies them.

What must agree: without sticky actions, the RAM and reward after every step, for the same seed and actions (the
same frameskip, action set and reset). With sticky actions (0.25) the two draw from different random streams (saferl
keeps its own so that snapshots replay exactly), so single trajectories differ; what must agree is the law: each frame
repeats the previously applied action with probability 0.25, which shows in how far the paddle moves on the first
step after the action changes (the new action taking over after 0, 1, 2, 3 or 4 frames).
"""

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest

from saferl.env.ale import make_ale_env
from saferl.games import get_game

PONG = get_game("pong")
DOWN, UP = 3, 2  # LEFT and RIGHT move the right paddle down and up


def ale_v5(**settings) -> gym.Env:
    return gym.make("ALE/Pong-v5", full_action_space=False, **settings)


def test_without_sticky_actions_every_step_equals_ale_v5() -> None:
    ours = make_ale_env(PONG, seed=5, repeat_action_probability=0.0)
    theirs = ale_v5(repeat_action_probability=0.0)
    theirs.reset(seed=5)
    assert np.array_equal(ours.unwrapped.ale.getRAM(), theirs.unwrapped.ale.getRAM())
    rng = np.random.default_rng(0)
    for step in range(150):
        action = int(rng.integers(6))
        _, our_reward, our_end, _, _ = ours.step(action)
        _, their_reward, their_end, _, _ = theirs.step(action)
        assert np.array_equal(ours.unwrapped.ale.getRAM(), theirs.unwrapped.ale.getRAM()), f"step {step}"
        assert our_reward == their_reward and our_end == their_end


def paddle_moves_after_a_change(env: gym.Env, cycles: int) -> Counter:
    """Hold DOWN until the paddle rests at the bottom, then press UP once; how far it moved up, per cycle."""
    moves: Counter = Counter()
    ram = env.unwrapped.ale.getRAM
    for _ in range(cycles):
        for _ in range(20):
            if env.step(DOWN)[2]:
                env.reset()
        start = int(ram()[51])
        if env.step(UP)[2]:
            env.reset()
        if start == 203:  # at the bottom (a reset in between can move it)
            moves[start - int(ram()[51])] += 1
    return moves


@pytest.mark.slow
def test_sticky_actions_follow_ale_v5s_law() -> None:
    ours = make_ale_env(PONG, seed=1)
    theirs = ale_v5()
    theirs.reset(seed=1)
    # UP takes over after k frames with probability 0.75 * 0.25^k (k < 4), the rest 0.25^4: the paddle moves up
    # 9 px (k = 0), 5 px (k = 1), 3 px (k = 2), and not at all for k of 3 or 4 (measured on both envs).
    law = {9: 0.75, 5: 0.1875, 3: 0.046875, 0: 0.015625}
    measured = {}
    for name, env in (("saferl", ours), ("ALE v5", theirs)):
        moves = paddle_moves_after_a_change(env, 200)
        n = sum(moves.values())
        assert n > 190 and set(moves) <= set(law), (name, moves)
        measured[name] = {move: moves[move] / n for move in law}
        for move, p in law.items():
            assert measured[name][move] == pytest.approx(p, abs=0.08), (name, moves)
    apart = sum(abs(measured["saferl"][m] - measured["ALE v5"][m]) for m in law) / 2
    assert apart < 0.1, measured
    sticky_off = paddle_moves_after_a_change(make_ale_env(PONG, seed=1, repeat_action_probability=0.0), 20)
    assert set(sticky_off) == {9}, "without sticky actions UP always takes over at once"
