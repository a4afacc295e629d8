"""Pong's ground truth and blocking rule on the real ROM."""

import dataclasses

import numpy as np
import pytest

from rollouts import random_policy_totals
from saferl.env.ale import make_ale_env
from saferl.errors import SaferlError
from saferl.games import GameState, get_game
from saferl.games.pong import CATASTROPHE_BELOW, PAPER_MARGIN, paddle_bottom
from saferl.oversight import LookaheadOverseer, ScriptedOverseer
from saferl.oversight.envs import make_overseen_env

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


PIXEL_SEEDS, PIXEL_STEPS = range(4), 2500  # 10,000 steps
FORCED_DOWN = 0.3  # share of steps that press DOWN, so the paddle often reaches the bottom zone


@pytest.mark.slow
def test_ram_paddle_and_catastrophe_equal_the_paddle_pixels_on_every_random_step():
    """On 10,000 random steps (4 seeds, sticky actions 0.25, 30 % forced DOWN) the RAM paddle bottom is the
    bottom row of the paddle's pixels and the catastrophe verdict is the pixels' (bottom row > 178), every step."""
    visible = catastrophes = odd_at_the_line = 0
    steps = len(PIXEL_SEEDS) * PIXEL_STEPS
    for seed in PIXEL_SEEDS:
        env = make_ale_env(PONG, seed=seed)
        ale = env.unwrapped.ale
        rng = np.random.default_rng(seed)
        before = GameState.from_ale(ale, with_frame=True)
        for _ in range(PIXEL_STEPS):
            action = DOWN if rng.random() < FORCED_DOWN else int(rng.integers(6))
            _, _, terminated, truncated, _ = env.step(action)
            after = GameState.from_ale(ale, with_frame=True)
            pixels = pixel_paddle_bottom(after.frame)
            if pixels is not None:
                visible += 1
                assert paddle_bottom(after) == pixels, f"ram[51] = {after.ram[51]}"
                odd_at_the_line += pixels == CATASTROPHE_BELOW + 1 and after.ram[51] % 2 == 1
            pixel_verdict = pixels is not None and pixels > CATASTROPHE_BELOW
            assert PONG.is_catastrophe(before, after) == pixel_verdict, f"ram[51] = {after.ram[51]}, pixels {pixels}"
            catastrophes += pixel_verdict
            before = after
            if terminated or truncated:
                env.reset()
                before = GameState.from_ale(ale, with_frame=True)
        env.close()
    assert visible >= 0.99 * steps, "the paddle is on screen nearly always"
    assert 0.1 * steps < catastrophes < 0.9 * steps, "both verdicts are common"
    assert odd_at_the_line >= 10, "the sprite's 2-line offset decides these steps (bottom row 179 at ram[51] 177)"


@pytest.mark.slow
def test_rule_with_safe_action_lets_no_catastrophe_through_a_random_policy():
    bare = random_policy_totals(PONG, None, seed=1, steps=3000)
    scripted = random_policy_totals(PONG, ScriptedOverseer(), seed=1, steps=3000)
    assert bare["catastrophes"] > 50
    assert scripted["catastrophes"] == 0
    assert scripted["blocks"] > 0


def test_unknown_game_names_the_argument_and_the_choices():
    with pytest.raises(SaferlError, match=r"--game.*pong"):
        get_game("pacman")


NO_STICKY = get_game("pong_no_sticky")


def held_down_under_the_rule(game, steps: int, seed: int = 0) -> tuple[int, int]:
    """A policy that always proposes DOWN, each blocked step played as the rule's safe action: the catastrophes and
    the lowest row the paddle's bottom reached."""
    env = make_ale_env(game, seed=seed)
    ale = env.unwrapped.ale
    catastrophes = lowest = 0
    for _ in range(steps):
        state = GameState.from_ale(ale)
        env.step(game.safe_action(state, DOWN) if game.should_block(state, DOWN) else DOWN)
        after = GameState.from_ale(ale)
        catastrophes += game.is_catastrophe(state, after)
        lowest = max(lowest, paddle_bottom(after))
    env.close()
    return catastrophes, lowest


def test_without_sticky_actions_a_32_px_zone_holds_a_paddle_pushed_down_and_lets_it_reach_low_balls():
    """Without sticky actions a zone 32 px above the line stops a paddle held down above the line, and the paddle gets
    below everything the sticky-action rule allows (its zone starts 56 px above the line)."""
    assert NO_STICKY.env_kwargs["repeat_action_probability"] == 0.0 and NO_STICKY.block_below == CATASTROPHE_BELOW - 32
    catastrophes, lowest = held_down_under_the_rule(NO_STICKY, 1500)
    assert catastrophes == 0
    assert lowest > PONG.block_below + 24 + 16, "below one step's fall and the drift past the sticky rule's zone"


def test_without_sticky_actions_no_mix_of_down_and_noop_crosses_the_line_from_any_state_the_rule_allows():
    """From states of random play, every sequence of three steps of DOWN or NOOP (UP where the rule blocks), then
    UP, keeps the paddle above the catastrophe line: the rule is a guarantee, not a margin."""
    env = make_ale_env(NO_STICKY, seed=5)
    ale = env.unwrapped.ale

    def deepest(depth: int) -> int:
        start, lowest = ale.cloneState(), 0
        state = GameState.from_ale(ale)
        for action in [UP] if NO_STICKY.should_block(state, DOWN) else [DOWN, 0]:
            ale.restoreState(start)
            env.step(action)
            lowest = max(lowest, paddle_bottom(GameState.from_ale(ale)))
            if depth > 1:
                lowest = max(lowest, deepest(depth - 1))
            else:
                for _ in range(6):
                    env.step(UP)
                    lowest = max(lowest, paddle_bottom(GameState.from_ale(ale)))
        ale.restoreState(start)
        return lowest

    rng, checked, worst = np.random.default_rng(5), 0, 0
    action = 0
    for _ in range(3000):
        action = int(rng.choice([0, UP, DOWN])) if rng.random() < 0.3 else action
        if any(env.step(action)[2:4]):
            env.reset()
        if checked < 150 and NO_STICKY.block_below - 40 <= paddle_bottom(GameState.from_ale(ale)) <= NO_STICKY.block_below:
            checked += 1
            worst = max(worst, deepest(3))
    env.close()
    assert checked == 150
    assert NO_STICKY.block_below + 16 < worst <= CATASTROPHE_BELOW, "some sequence goes deep, none crosses"


BALL_RGB = np.array([236, 236, 236])


def ball_rows_at_the_paddle(held_between: tuple[int, int], steps: int = 3000, seed: int = 3) -> list[int]:
    """The ball's top pixel row each time it reaches the paddle's column (x 140) while the paddle, which never meets
    it, is held with its bottom between ``held_between`` (UP above the band, DOWN below it)."""
    env = make_ale_env(NO_STICKY, seed=seed)
    ale = env.unwrapped.ale
    low, high = held_between
    rows, last_column = [], None
    for _ in range(steps):
        bottom = paddle_bottom(GameState.from_ale(ale))
        if any(env.step(UP if bottom > high else DOWN if bottom < low else 0)[2:4]):
            env.reset()
        ball = np.argwhere((ale.getScreenRGB()[34:194] == BALL_RGB).all(axis=-1))
        column = ball[:, 1].mean() if len(ball) else None
        if column is not None and last_column is not None and last_column < 140 <= column:
            rows.append(int(ball[:, 0].min()) + 34)
        last_column = column
    env.close()
    return rows


def test_the_serve_aims_away_from_the_paddle_so_a_paddle_kept_high_under_the_rule_meets_no_serve():
    """Pong serves the ball to the side the agent's paddle is not on. A paddle kept high gets serves that cross its
    column with the ball's top at row 176 or lower, below the deepest row the no-sticky rule lets the paddle's bottom
    reach (about 173): no move the rule allows meets them, so a policy that keeps its paddle high under the rule
    loses every point untouched (what an untrained agent's random walk, pushed up at the zone's edge, mostly does).
    Kept still just above the zone, the paddle gets serves at the top of the field, which it can chase."""
    high = ball_rows_at_the_paddle((0, 60))
    assert len(high) >= 60 and np.mean(np.array(high) >= 176) >= 0.9
    assert min(row for row in high if row >= 176) > NO_STICKY.block_below + 24, "below the paddle's deepest reach"
    kept_low = ball_rows_at_the_paddle((NO_STICKY.block_below - 16, NO_STICKY.block_below))
    assert len(kept_low) >= 60 and np.mean(np.array(kept_low) <= 60) >= 0.9


@pytest.mark.slow
def test_the_papers_own_zone_lets_a_random_policy_across_the_line_where_saferls_wider_one_does_not():
    """The paper's code blocks below row 162 (32 px above the field's bottom, 16 above the line): without sticky
    actions random play crosses the line under it; under saferl's zone, 32 px above the line, it never does."""
    papers = random_policy_totals(dataclasses.replace(NO_STICKY, block_margin=PAPER_MARGIN), ScriptedOverseer(),
                                  seed=11, steps=10_000)
    saferls = random_policy_totals(NO_STICKY, ScriptedOverseer(), seed=11, steps=10_000)
    assert papers["catastrophes"] > 20 and papers["blocks"] > 0
    assert saferls["catastrophes"] == 0 and saferls["blocks"] > 0


def touches_per_1000_steps(overseer, steps: int = 20_000, seed: int = 11) -> float:
    """How often uniform random play turns the ball back at the agent's paddle (the ball's x, RAM byte 49, rising
    towards the paddle and then falling, in steps of at most 8 px: a serve or a point jumps further)."""
    env = make_overseen_env(NO_STICKY, overseer, seed=seed)
    env.reset(seed=seed)
    ale = env.unwrapped.ale
    rng = np.random.default_rng(seed)
    touches, last_x, rising = 0, None, False
    for _ in range(steps):
        if any(env.step(int(rng.integers(6)))[2:4]):
            env.reset()
            last_x, rising = None, False
            continue
        x = int(ale.getRAM()[49])
        if last_x is not None and x != last_x and abs(x - last_x) <= 8:
            touches += rising and x < last_x and last_x > 150
            rising = x > last_x
        elif last_x is not None and abs(x - last_x) > 8:
            rising = False
        last_x = x
    env.close()
    return 1000 * touches / steps


@pytest.mark.slow
def test_random_play_touches_the_ball_far_less_often_under_the_rule_and_often_under_an_overseer_preferring_noop():
    """The first signal a Pong learner gets is a touch. Under the no-sticky rule, which keeps the paddle out of the
    low serves' rows, uniform random play touches the ball at most a third as often as unoverseen. The look-ahead
    overseer blocks only moves that would cross the line and, with ``prefer=[0]``, replaces them with NOOP where that
    is safe: the paddle stays low at the serve, and random play touches the ball several times as often as under the
    rule, more than half as often as unoverseen."""
    unoverseen = touches_per_1000_steps(None)
    under_the_rule = touches_per_1000_steps(ScriptedOverseer())
    preferring_noop = touches_per_1000_steps(LookaheadOverseer(prefer=[0]))
    assert unoverseen >= 1.5, "unoverseen random play touches the ball a few times per 1,000 steps"
    assert under_the_rule <= unoverseen / 3
    assert preferring_noop >= max(3 * under_the_rule, unoverseen / 2)
