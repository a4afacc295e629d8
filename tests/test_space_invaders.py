"""Space Invaders on the real ROM: shooting one's own barriers, its pixel cross-check, the blocking rule."""

from __future__ import annotations

import numpy as np
import pytest

from saferl.env.ale import make_ale_env
from saferl.games.base import GameState
from saferl.games.space_invaders import (
    BARRIER_BOTTOM,
    BARRIER_COLOR,
    BARRIER_TOP,
    FIRE,
    LEFTFIRE,
    RIGHTFIRE,
    SHOT_COLOR,
    SPACE_INVADERS,
    barrier_columns,
    pixel_shot_hits_barrier,
    shot_column,
)

NOOP, RIGHT, LEFT = 0, 2, 3
GAP_COLUMN = 60  # between the first two barriers (columns 42-49 and 74-81)


def _env(seed: int, sticky: bool):
    overrides = {} if sticky else {"repeat_action_probability": 0.0}
    env = make_ale_env(SPACE_INVADERS, seed=seed, **overrides)
    return env, env.unwrapped.ale


def _snapshot(ale) -> GameState:
    return GameState.from_ale(ale, with_frame=True)


def _barrier_pixels(frame: np.ndarray) -> np.ndarray:
    return np.all(frame[BARRIER_TOP:BARRIER_BOTTOM] == BARRIER_COLOR, axis=2)


def _bunker_bits_in_column(ram: np.ndarray, column: int) -> int:
    """How many bunker rows (RAM bitmap) hold a bit in pixel ``column``."""
    bunker, bit = divmod(column - 42, 32)
    rows = ram[43 + 9 * bunker : 52 + 9 * bunker]
    return int(sum((int(row) >> (7 - bit)) & 1 for row in rows))


def _move_to(env, ale, column: int) -> GameState:
    """Walk the ship (without sticky actions) until a shot would leave from ``column``."""
    state = _snapshot(ale)
    for _ in range(200):
        if shot_column(state.ram) == column:
            return state
        env.step(RIGHT if shot_column(state.ram) < column else LEFT)
        state = _snapshot(ale)
    raise AssertionError(f"ship never reached shot column {column}")


def test_ram_barrier_bitmap_and_shot_column_match_the_pixels():
    env, ale = _env(seed=0, sticky=False)
    state = _move_to(env, ale, GAP_COLUMN)
    drawn = _barrier_pixels(state.frame).any(axis=0)
    assert np.array_equal(barrier_columns(state.ram), drawn)
    env.step(FIRE)
    env.step(NOOP)  # the shot is drawn on even frames: the 4th frame of each step shows it
    shot = np.all(ale.getScreenRGB()[:185] == SHOT_COLOR, axis=2).any(axis=0)
    assert np.flatnonzero(shot).tolist() == [GAP_COLUMN]


def test_once_the_game_stops_drawing_the_barriers_they_count_as_gone_and_no_shot_hits_them():
    """Random play of seed 2 (sticky actions) brings the invaders down to the barriers' rows within 2,300 steps;
    from then on the game draws no barrier though their bits stay in RAM, and the random policy's shots (nothing
    blocked) never hit them. Everywhere the RAM barrier columns are the drawn ones but on a few steps where an
    enemy shot's erosion shows a frame late."""
    env, ale = _env(seed=2, sticky=True)
    rng = np.random.default_rng(2)
    state = _snapshot(ale)
    steps, undrawn, fires, hits, agree = 2300, 0, 0, 0, 0
    for _ in range(steps):
        drawn = _barrier_pixels(state.frame).any(axis=0)
        agree += np.array_equal(barrier_columns(state.ram), drawn)
        gone = bool(state.ram[43:70].any()) and not barrier_columns(state.ram).any()
        action = int(rng.integers(6))
        undrawn += gone
        fires += gone and action in (FIRE, RIGHTFIRE, LEFTFIRE)
        _, _, terminated, truncated, _ = env.step(action)
        after = _snapshot(ale)
        hits += gone and SPACE_INVADERS.is_catastrophe(state, after)
        if gone:
            assert not drawn.any()
        if terminated or truncated:
            env.reset()
            after = _snapshot(ale)
        state = after
    assert undrawn > 200 and fires > 80 and hits == 0
    assert agree > 0.99 * steps


@pytest.mark.parametrize("column", [42, 46, 78])
def test_shot_into_a_barrier_is_caught_at_the_hit_step(column):
    env, ale = _env(seed=0, sticky=False)
    state = _move_to(env, ale, column)
    ram_hits, pixel_hits, bits_lost, pixels_lost = [], [], [], []
    for step, action in enumerate([FIRE] + [NOOP] * 8):
        env.step(action)
        after = _snapshot(ale)
        if SPACE_INVADERS.is_catastrophe(state, after):
            ram_hits.append(step)
        if pixel_shot_hits_barrier(state.frame, after.frame):
            pixel_hits.append(step)
        if _bunker_bits_in_column(after.ram, column) < _bunker_bits_in_column(state.ram, column):
            bits_lost.append(step)
        if (_barrier_pixels(state.frame) & ~_barrier_pixels(after.frame))[:, column].any():
            pixels_lost.append(step)
        state = after
    assert ram_hits == [0]  # the shot leaves and hits the barrier above within the FIRE step
    assert pixel_hits == [0]
    assert bits_lost[:1] == [0]  # the barrier's bitmap loses bits in that column at that step
    assert pixels_lost[:1] in ([0], [1])  # a hit on the step's last frame is drawn one frame later


def test_shot_through_a_gap_is_no_catastrophe():
    env, ale = _env(seed=0, sticky=False)
    state = _move_to(env, ale, GAP_COLUMN)
    heights = []
    for action in [FIRE] + [NOOP] * 10:
        env.step(action)
        after = _snapshot(ale)
        assert not SPACE_INVADERS.is_catastrophe(state, after)
        assert not pixel_shot_hits_barrier(state.frame, after.frame)
        heights.append(int(after.ram[85]))
        state = after
    assert min(heights) < 70  # the shot flew past the barriers' rows (y 76-85)


def test_enemy_shots_eroding_a_barrier_are_no_catastrophe():
    env, ale = _env(seed=0, sticky=False)
    state = _move_to(env, ale, 46)  # under the first barrier, where the invaders aim
    start = _barrier_pixels(state.frame).sum()
    for _ in range(150):
        env.step(NOOP)
        after = _snapshot(ale)
        assert not SPACE_INVADERS.is_catastrophe(state, after)
        assert not pixel_shot_hits_barrier(state.frame, after.frame)
        state = after
    assert _barrier_pixels(state.frame).sum() < start - 10  # the barriers did get shot


def test_safe_action_drops_the_fire():
    state = GameState.from_ale(_env(seed=0, sticky=True)[1])
    safe = {action: SPACE_INVADERS.safe_action(state, action) for action in range(6)}
    assert safe == {NOOP: NOOP, FIRE: NOOP, RIGHT: RIGHT, LEFT: LEFT, RIGHTFIRE: RIGHT, LEFTFIRE: LEFT}


def test_should_block_only_firing_near_barriers():
    state = GameState.from_ale(_env(seed=0, sticky=True)[1])

    def at(column: int, shot_y: int = 246) -> GameState:
        ram = state.ram.copy()
        ram[28] = column - 3  # the ship's position; a shot leaves 3 px to its right
        ram[85] = shot_y
        return GameState(ram=ram, lives=state.lives)

    firing = (FIRE, RIGHTFIRE, LEFTFIRE)
    assert not any(SPACE_INVADERS.should_block(at(42), action) for action in (NOOP, RIGHT, LEFT))
    assert all(SPACE_INVADERS.should_block(at(42), action) for action in firing)
    assert not any(SPACE_INVADERS.should_block(at(GAP_COLUMN), action) for action in firing)
    # a shot leaves within 2 px either way during the step (the barrier starts at column 42); the moving
    # actions' margin leans their way (below)
    assert all(SPACE_INVADERS.should_block(at(40), action) for action in firing)
    assert not any(SPACE_INVADERS.should_block(at(39), action) for action in (FIRE, LEFTFIRE))
    # a shot in flight can be freed while the action is still sticky: the margin leans its way, whether or not
    # the frame shows a shot in flight (RAM 85)
    for shot_y in (60, 246):
        assert SPACE_INVADERS.should_block(at(38, shot_y), RIGHTFIRE)
        assert not SPACE_INVADERS.should_block(at(37, shot_y), RIGHTFIRE)
        assert not SPACE_INVADERS.should_block(at(38, shot_y), LEFTFIRE)
        assert not SPACE_INVADERS.should_block(at(38, shot_y), FIRE)
    undrawn = at(42)
    undrawn.ram[115] = 252  # the invaders reached the barriers' rows: the game no longer draws them, nor hits them
    assert not any(SPACE_INVADERS.should_block(undrawn, action) for action in firing)
    assert not [zone for zone in SPACE_INVADERS.danger_zones(undrawn) if zone.label.startswith("FIRE blocked")]
    zones = SPACE_INVADERS.danger_zones(state)
    blocked = [zone for zone in zones if zone.label.startswith("FIRE blocked")]
    assert [(zone.left, zone.right) for zone in blocked] == [(40, 52), (72, 84), (104, 116)]
    for zone in blocked:  # the drawn zone is exactly where FIRE is blocked
        assert SPACE_INVADERS.should_block(at(zone.left), FIRE)
        assert SPACE_INVADERS.should_block(at(zone.right - 1), FIRE)
        assert not SPACE_INVADERS.should_block(at(zone.left - 1), FIRE)
        assert not SPACE_INVADERS.should_block(at(zone.right), FIRE)


def _random_policy_catastrophes(seeds: range, steps: int, block: bool) -> tuple[int, int]:
    """(catastrophes, blocks) of a uniform random policy, sticky actions on (v5 defaults)."""
    catastrophes = blocks = 0
    for seed in seeds:
        env, ale = _env(seed=seed, sticky=True)
        rng = np.random.default_rng(seed)
        state = GameState.from_ale(ale)
        for _ in range(steps):
            action = int(rng.integers(6))
            if block and SPACE_INVADERS.should_block(state, action):
                blocks += 1
                action = SPACE_INVADERS.safe_action(state, action)
            _, _, terminated, truncated, _ = env.step(action)
            after = GameState.from_ale(ale)
            catastrophes += SPACE_INVADERS.is_catastrophe(state, after)
            state = after
            if terminated or truncated:
                env.reset()
                state = GameState.from_ale(ale)
    return catastrophes, blocks


BLOCKING_SEEDS, BLOCKING_STEPS = range(3), 2000  # 6,000 steps


@pytest.mark.slow
def test_random_policy_shoots_its_barriers():
    catastrophes, _ = _random_policy_catastrophes(BLOCKING_SEEDS, BLOCKING_STEPS, block=False)
    assert catastrophes > 50  # measured 150 here, about 115 per 5,000 steps on average


@pytest.mark.slow
def test_blocking_rule_lets_no_catastrophe_through():
    catastrophes, blocks = _random_policy_catastrophes(BLOCKING_SEEDS, BLOCKING_STEPS, block=True)
    assert catastrophes == 0
    assert blocks > 0


ENEMY_SHOT_Y, ENEMY_SHOT_X = (81, 82), (83, 84)  # RAM of the two enemy shots (246 = none)
NO_SHOT = 246
ENEMY_SHOT_AT_BARRIERS = range(70, 82)  # enemy shot y (RAM) while it crosses the barriers' rows
SHIP_X = 28
AGREEMENT_SEEDS, AGREEMENT_STEPS = (0, 2, 6), 3400  # 10,200 steps, with both kinds of excluded steps


def _enemy_shots_ended_at_barriers(before: np.ndarray, after: np.ndarray) -> list[int]:
    """x (RAM) of the enemy shots that fly in the barriers' rows at ``before`` and no longer fly at ``after``.

    The two RAM slots may swap: a shot flies on when a slot of ``after`` holds its x at a greater y.
    """
    ended = []
    for y_slot, x_slot in zip(ENEMY_SHOT_Y, ENEMY_SHOT_X):
        y, x = int(before[y_slot]), int(before[x_slot])
        if y not in ENEMY_SHOT_AT_BARRIERS:
            continue
        slots = zip(ENEMY_SHOT_Y, ENEMY_SHOT_X)
        if not any(after[ys] != NO_SHOT and after[ys] > y and after[xs] == x for ys, xs in slots):
            ended.append(x)
    return ended


def _unseen_by_v5_frames(before: GameState, after: GameState) -> bool:
    """The steps whose barrier pixels v5 frames cannot attribute (see the test below)."""
    column = int(before.ram[SHIP_X]) + 3  # the player's shot column
    enemy_shot = any(column - 1 <= x <= column + 5 for x in _enemy_shots_ended_at_barriers(before.ram, after.ram))
    vanished = _barrier_pixels(before.frame).any() and not _barrier_pixels(after.frame).any()
    return enemy_shot or vanished


@pytest.mark.slow
def test_ram_and_pixel_detectors_agree():
    """On 10,200 random steps (seeds 0, 2, 6; sticky actions 0.25) every RAM catastrophe is a pixel one at the
    same step, and every pixel one is a RAM one except on the steps v5 frames cannot judge, which are:

    * an enemy shot ends in the barriers' rows (its RAM y, 70-81, goes to 246) with x within -1..+5 of the
      player's shot column ``ram[28] + 3``. It eats barrier columns x-3..x-1, which overlap the columns the
      player's shot can leave from (within 2 px of that column); v5 frames (each step's 4th, an even frame)
      never show enemy shots, which are drawn on odd frames, so a lost lowest barrier pixel there looks like
      the player's shot.
    * the step on which every barrier pixel vanishes: the invaders come down to the barriers' rows and the
      game stops drawing the barriers (RAM 43-69 unchanged), so the lowest pixel of every column is lost.

    Measured on 80,000 steps (seeds 0-15 x 5,000): 2,024 RAM catastrophes, all seen in the pixels; 13 pixel
    false alarms, all on such steps (473 steps, 0.6 %: 461 enemy shots, 12 vanishings).
    """
    both = excluded = excluded_false_alarms = 0
    steps = len(AGREEMENT_SEEDS) * AGREEMENT_STEPS
    for seed in AGREEMENT_SEEDS:
        env, ale = _env(seed=seed, sticky=True)
        rng = np.random.default_rng(seed)
        state = _snapshot(ale)
        for step in range(AGREEMENT_STEPS):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
            after = _snapshot(ale)
            ram = SPACE_INVADERS.is_catastrophe(state, after)
            pixels = pixel_shot_hits_barrier(state.frame, after.frame)
            assert pixels or not ram, f"seed {seed} step {step}: a RAM catastrophe the pixels do not show"
            if _unseen_by_v5_frames(state, after):
                excluded += 1
                excluded_false_alarms += pixels and not ram
            else:
                assert ram == pixels, f"seed {seed} step {step}: a pixel false alarm"
            both += ram and pixels
            state = after
            if terminated or truncated:
                env.reset()
                state = _snapshot(ale)
        env.close()
    print(f"{both} catastrophes in {steps} steps; {excluded} steps excluded, {excluded_false_alarms} false alarms")
    assert both > 150
    assert excluded < steps // 100
    assert excluded_false_alarms >= 1, "the seeds hold steps the frames cannot judge (5 measured)"
