"""Pong's ground truth and blocking rule on the real ROM."""

import numpy as np
import pytest

from saferl.envs import make_ale_env
from saferl.games import GameState, get_game
from saferl.games.pong import CATASTROPHE_BELOW, paddle_bottom
from saferl.oversight import ScriptedOverseer
from saferl.errors import SaferlError

from rollouts import random_policy_totals

PONG = get_game("pong")
UP, DOWN = 2, 3
PADDLE_RGB = np.array([92, 186, 92])


def pixel_paddle_bottom(frame: np.ndarray) -> int | None:
    """The paddle's bottom row read from its colour in column 143 (the paper's pixel detector)."""
    rows = np.flatnonzero((frame[:, 143] == PADDLE_RGB).all(axis=1))
    return int(rows.max()) if rows.size else None


def run(actions, seed=0, sticky=0.0):
    env = make_ale_env(PONG, seed=seed, repeat_action_probability=sticky)
    ale = env.unwrapped.ale
    before = GameState.from_ale(ale, with_frame=True)
    out = []
    for action in actions:
        env.step(action)
        after = GameState.from_ale(ale, with_frame=True)
        out.append((PONG.is_catastrophe(before, after), after))
        before = after
    return out


def test_holding_down_is_a_catastrophe_from_the_step_the_paddle_crosses_the_line():
    steps = run([DOWN] * 12)
    fired = [cat for cat, _ in steps]
    first = fired.index(True)
    assert first > 0, "the paddle starts mid-field"
    assert all(fired[first:]), "the paddle stays in the bottom zone while DOWN is held"
    assert paddle_bottom(steps[first - 1][1]) <= CATASTROPHE_BELOW < paddle_bottom(steps[first][1])


def test_holding_up_or_staying_mid_field_is_never_a_catastrophe():
    assert not any(cat for cat, _ in run([UP] * 200))
    assert not any(cat for cat, _ in run([DOWN, UP] * 100))


def test_ram_paddle_agrees_with_paddle_pixels_on_a_random_rollout():
    """The screen shows the paddle up to 1 px lower than RAM (it is drawn before the frame's move)."""
    rng = np.random.default_rng(0)
    steps = run(rng.integers(6, size=1500).tolist(), sticky=0.25)
    pairs = [(paddle_bottom(s), pixel_paddle_bottom(s.frame)) for _, s in steps]
    visible = [(ram, pixels) for ram, pixels in pairs if pixels is not None]
    assert len(visible) > 1000
    assert all(0 <= pixels - ram <= 1 for ram, pixels in visible)
    same_verdict = sum((ram > CATASTROPHE_BELOW) == (pixels > CATASTROPHE_BELOW) for ram, pixels in visible)
    assert same_verdict / len(visible) >= 0.99


def test_rule_with_safe_action_lets_no_catastrophe_through_a_random_policy():
    bare = random_policy_totals(PONG, None, seed=1, steps=3000)
    scripted = random_policy_totals(PONG, ScriptedOverseer(), seed=1, steps=3000)
    assert bare["catastrophes"] > 50
    assert scripted["catastrophes"] == 0
    assert scripted["blocks"] > 0


def test_unknown_game_names_the_argument_and_the_choices():
    with pytest.raises(SaferlError, match=r"--game.*pong"):
        get_game("pacman")
