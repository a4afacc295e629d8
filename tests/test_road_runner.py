"""Road Runner's ground truth (a life lost on level 1, dated to the death), level byte and blocking rule, on
the real ROM. Scripted runs turn sticky actions off, so they replay exactly."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from saferl.envs import action_names, make_ale_env
from saferl.games.base import GameState
from saferl.games.road_runner import (
    COYOTE_X,
    COYOTE_Y,
    DIRECTIONS,
    FIRE_ACTIONS,
    LEVEL,
    LIVES_LAG_MAX,
    LIVES_LAG_MIN,
    PLAYER_BOTTOM,
    PLAYER_LEFT,
    PLAYER_RIGHT,
    PLAYER_TOP,
    PLAYER_X,
    PLAYER_Y,
    ROAD_RUNNER,
    TRUCK_LANE,
    TRUCK_X,
    dying,
)

NOOP, LEFT = 0, 4
BLACK_SCREEN_MEAN = 10  # the paper's level-change test: mean(frame) < 10
COYOTE_RGB = (198, 108, 58)
RUNNER_RGB = [(101, 111, 228), (84, 92, 214), (66, 72, 200)]
BELOW_SKY = 60  # first frame row below the sky (whose birds share the runner's blues)


def sprite_box(frame: np.ndarray, colours: list[tuple[int, int, int]]) -> tuple[int, int, int, int] | None:
    """Rows [top, bottom) and columns [left, right) of the pixels below the sky with one of ``colours``."""
    below = frame[BELOW_SKY:]
    mask = np.zeros(below.shape[:2], dtype=bool)
    for colour in colours:
        mask |= (below == colour).all(axis=-1)
    rows, cols = np.nonzero(mask)
    if not rows.size:
        return None
    return int(rows.min()) + BELOW_SKY, int(rows.max()) + BELOW_SKY + 1, int(cols.min()), int(cols.max()) + 1


@dataclass
class Rollout:
    """One episode's steps: ``fired[t]`` / ``lives[t]`` / ``states[t]`` belong to step t + 1's result."""

    fired: list[bool] = field(default_factory=list)
    lives: list[int] = field(default_factory=list)
    states: list[GameState] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    blocks: int = 0
    start_lives: int = 0
    terminated: bool = False

    def firings(self) -> list[int]:
        return [t for t, fired in enumerate(self.fired) if fired]

    def drops(self) -> list[int]:
        lives = [self.start_lives, *self.lives]
        return [t for t in range(len(self.lives)) if lives[t + 1] < lives[t]]


def rollout(policy, steps: int, seed: int = 0, sticky: float = 0.0, rule: bool = False, frames: bool = False,
            stop_at_end: bool = True) -> Rollout:
    """Play ``policy(t, state) -> action`` for ``steps`` steps; with ``rule``, blocked actions are replaced."""
    env = make_ale_env(ROAD_RUNNER, seed=seed, repeat_action_probability=sticky)
    ale = env.unwrapped.ale
    before = GameState.from_ale(ale)
    out = Rollout(start_lives=before.lives)
    for t in range(steps):
        action = policy(t, before)
        if rule and ROAD_RUNNER.should_block(before, action):
            action = ROAD_RUNNER.safe_action(before, action)
            out.blocks += 1
        obs, _, terminated, truncated, _ = env.step(action)
        after = GameState.from_ale(ale)
        out.fired.append(ROAD_RUNNER.is_catastrophe(before, after))
        out.lives.append(after.lives)
        out.states.append(after)
        if frames:
            out.means.append(float(obs.mean()))
        before = after
        if terminated or truncated:
            out.terminated = terminated
            if stop_at_end:
                break
            env.reset()
            before = GameState.from_ale(ale)
    env.close()
    return out


def coyote_holds_runner(state: GameState) -> bool:
    """The coyote-catch geometry from shared/ATARI.md."""
    ram = state.ram.astype(int)
    return ram[PLAYER_X] - ram[COYOTE_X] == 5 and ram[PLAYER_Y] == ram[COYOTE_Y]


def assert_one_firing_per_lost_life(run: Rollout) -> None:
    """Each lives drop on level 1 follows exactly one firing by LIVES_LAG_MIN..MAX steps (the last life ends
    the episode at the firing itself), and every firing is followed by its drop."""
    firings, drops = run.firings(), run.drops()
    assert len(firings) == len(drops)
    for fired, dropped in zip(firings, drops):
        if run.terminated and dropped == len(run.lives) - 1 and run.lives[-1] == 0:
            assert dropped == fired, "ALE ends the game at the last death itself"
        else:
            assert LIVES_LAG_MIN <= dropped - fired <= LIVES_LAG_MAX


@pytest.fixture(scope="module")
def left_to_level_two() -> Rollout:
    """LEFT, corrected by the rule, runs through level 1 without dying and on into level 2 (about 840 steps)."""
    return rollout(lambda t, s: LEFT, 1500, rule=True, frames=True)


def test_the_action_set_is_all_18_and_the_rule_tables_match_the_names():
    env = make_ale_env(ROAD_RUNNER, seed=0)
    names = action_names(env)
    env.close()
    assert len(names) == 18
    for action, name in enumerate(names):
        horizontal, vertical = DIRECTIONS[action]
        assert (action in FIRE_ACTIONS) == ("FIRE" in name)
        assert horizontal == ("RIGHT" in name) - ("LEFT" in name)
        assert vertical == ("DOWN" in name) - ("UP" in name)


def test_standing_still_the_coyote_catch_fires_once_per_life_at_the_step_the_catch_begins():
    run = rollout(lambda t, s: NOOP, 400)
    assert run.terminated and run.lives[-1] == 0 and run.start_lives == 3
    firings = run.firings()
    assert len(firings) == 3
    for t in firings:
        assert coyote_holds_runner(run.states[t]) and not coyote_holds_runner(run.states[t - 1])
        assert dying(run.states[t]) and not dying(run.states[t - 1])
    assert_one_firing_per_lost_life(run)
    non_final_lags = [d - f for f, d in zip(firings, run.drops())][:-1]
    assert all(20 <= lag <= 45 for lag in non_final_lags)


def test_running_left_lives_until_a_truck_hits_and_the_hit_fires_then():
    run = rollout(lambda t, s: LEFT, 600)
    firings = run.firings()
    assert len(firings) == 3
    first = firings[0]
    assert first > 150, "a long stretch without a death"
    assert not any(run.fired[:first]) and set(run.lives[: first + LIVES_LAG_MIN]) == {run.start_lives}
    for t in firings:
        hit, ram = run.states[t], run.states[t].ram.astype(int)
        assert ram[TRUCK_LANE] in (1, 2), "a truck is on the road"
        truck_left, truck_right = ram[TRUCK_X] - 2, ram[TRUCK_X] + 13
        assert truck_left <= ram[PLAYER_X] + 8 and truck_right >= ram[PLAYER_X] - 1, "the truck overlaps the runner"
        assert not coyote_holds_runner(hit)
    assert_one_firing_per_lost_life(run)


def test_random_play_every_lost_life_on_level_one_has_exactly_one_earlier_firing():
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        run = rollout(lambda t, s: int(rng.integers(18)), 3000, seed=seed, sticky=0.25)
        assert run.terminated and len(run.drops()) == 3
        assert all(run.states[t].ram[LEVEL] == 0 for t in range(len(run.states)))
        assert_one_firing_per_lost_life(run)


def test_level_byte_steps_up_exactly_at_the_black_screen_and_level_two_deaths_do_not_count(left_to_level_two):
    run = left_to_level_two
    assert run.blocks > 0, "plain LEFT is hit by a truck (see above); the rule steered it clear"
    levels = np.array([int(s.ram[LEVEL]) for s in run.states])
    black = np.array(run.means) < BLACK_SCREEN_MEAN
    change = int(np.argmax(levels > 0))
    assert change > 0 and set(levels[:change]) == {0} and set(levels[change:]) == {1}
    assert black[change] and not black[:change].any(), "level 2 starts with the black screen"
    black_end = change + int(np.argmin(black[change:]))
    assert 20 <= black_end - change <= 40 and not black[black_end:].any()
    assert not any(run.fired), "no death on level 1, and deaths on level 2 are not catastrophes"
    drops = run.drops()
    assert drops and min(drops) > change and run.lives[-1] == 0, "all three lives were lost on level 2"
    assert any(dying(s) for s in run.states[change:])


def test_rule_with_safe_action_prevents_catastrophes_of_random_play_on_the_same_seeds():
    def random_policy(seed):
        rng = np.random.default_rng(seed)
        return lambda t, s: int(rng.integers(18))

    counts = {}
    for rule in (False, True):
        runs = [rollout(random_policy(seed), 1500, seed=seed, sticky=0.25, rule=rule, stop_at_end=False)
                for seed in (11, 12)]
        counts[rule] = sum(len(run.firings()) for run in runs)
        level_one = sum(int(s.ram[LEVEL] == 0) for run in runs for s in run.states)
        assert level_one >= 2000, "the runs spend most of their steps on level 1"
    assert counts[False] >= 20
    assert counts[True] == 0


def test_safe_action_is_never_blocked_and_nothing_is_blocked_off_level_one_or_while_dying(left_to_level_two):
    rng = np.random.default_rng(5)
    run = rollout(lambda t, s: int(rng.integers(18)), 1000, seed=5, sticky=0.25, rule=True, stop_at_end=False)
    states = run.states + left_to_level_two.states
    blocked = 0
    for state in states:
        for action in range(18):
            if ROAD_RUNNER.should_block(state, action):
                blocked += 1
                assert state.ram[LEVEL] == 0 and not dying(state)
                assert not ROAD_RUNNER.should_block(state, ROAD_RUNNER.safe_action(state, action))
    assert 0 < blocked < 18 * len(states)


def test_ram_positions_agree_with_the_sprites_and_the_coyote_zone_covers_the_coyote():
    env = make_ale_env(ROAD_RUNNER, seed=0, repeat_action_probability=0.0)
    ale = env.unwrapped.ale
    rng = np.random.default_rng(0)
    checked, offsets = 0, []
    for _ in range(300):
        _, _, terminated, _, _ = env.step(int(rng.choice([NOOP, 2, 3, LEFT, 5, 6, 7, 8, 9])))
        if terminated:
            env.reset()
            continue
        state = GameState.from_ale(ale, with_frame=True)
        ram = state.ram.astype(int)
        if ram[TRUCK_LANE] != 0 or dying(state):
            continue
        runner = sprite_box(state.frame, RUNNER_RGB)
        x, y = ram[PLAYER_X], ram[PLAYER_Y]
        assert runner is not None
        top, bottom, left, right = runner
        assert PLAYER_TOP <= top - y and bottom - y <= PLAYER_BOTTOM
        assert PLAYER_LEFT <= left - x and right - x <= PLAYER_RIGHT
        offsets.append((top - y, bottom - y))
        coyote = sprite_box(state.frame, [COYOTE_RGB])
        if coyote is None:
            continue
        zone = next(z for z in ROAD_RUNNER.danger_zones(state) if z.label == "coyote")
        top, bottom, left, right = coyote
        assert zone.top <= top and bottom <= zone.bottom and zone.left <= left and right <= zone.right
        checked += 1
    env.close()
    assert checked >= 100
    tops, bottoms = zip(*offsets)
    assert min(tops) == PLAYER_TOP and np.median(bottoms) == PLAYER_BOTTOM, "the sprite box is tight"
    static = ROAD_RUNNER.danger_zones()
    assert [z.label for z in static] == ["truck lane 1", "truck lane 2"]
    assert all(0 <= z.top < z.bottom <= 210 and 0 <= z.left < z.right <= 160 for z in static)
