"""Road Runner's ground truth (a life lost on level 1, dated to the death), episodes that end with level 1,
level byte and blocking rule, on the real ROM. Scripted runs turn sticky actions off, so they replay exactly."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pytest

from saferl.env.ale import action_names, make_ale_env
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
    RoadRunner,
    dying,
)
from saferl.oversight.envs import make_vec_env

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
    """One episode's steps: ``actions[t]`` (executed) / ``fired[t]`` / ``lives[t]`` / ``states[t]`` /
    ``means[t]`` (the frame's mean) belong to step t + 1. ``level_end``: the step the env ended the
    episode on at the level change, when the ROM was played on past it (``past_level_end``)."""

    actions: list[int] = field(default_factory=list)
    fired: list[bool] = field(default_factory=list)
    lives: list[int] = field(default_factory=list)
    states: list[GameState] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    blocks: int = 0
    start_lives: int = 0
    terminated: bool = False
    game_over: bool = False
    level_end: int | None = None

    def firings(self) -> list[int]:
        return [t for t, fired in enumerate(self.fired) if fired]

    def drops(self) -> list[int]:
        lives = [self.start_lives, *self.lives]
        return [t for t in range(len(self.lives)) if lives[t + 1] < lives[t]]


def play(policy, steps: int, seed: int = 0, sticky: float = 0.0, rule: bool = False, frames: bool = False,
         stop_at_end: bool = True, past_level_end: bool = False, finish: bool = False) -> list[Rollout]:
    """Play ``policy(t, state) -> action`` for ``steps`` steps, one Rollout per episode; with ``rule``, blocked
    actions are replaced. With ``stop_at_end`` play stops at the first episode's end, else the env is reset;
    with ``finish`` the last episode is played to its end (else it may be cut short); with ``past_level_end``
    the ROM is played on past the level change that ended the episode (into level 2, outside any episode)."""
    env = make_ale_env(ROAD_RUNNER, seed=seed, repeat_action_probability=sticky)
    ale = env.unwrapped.ale
    before = GameState.from_ale(ale)
    out = [Rollout(start_lives=before.lives)]
    t = 0
    while t < steps or (finish and out[-1].states):
        run = out[-1]
        action = policy(t, before)
        if rule and ROAD_RUNNER.should_block(before, action):
            action = ROAD_RUNNER.safe_action(before, action)
            run.blocks += 1
        obs, _, terminated, truncated, _ = env.step(action)
        after = GameState.from_ale(ale)
        run.actions.append(action)
        run.fired.append(ROAD_RUNNER.is_catastrophe(before, after))
        run.lives.append(after.lives)
        run.states.append(after)
        if frames:
            run.means.append(float(obs.mean()))
        before, t = after, t + 1
        if terminated and past_level_end and not ale.game_over():  # on level 2 every step "ends" the episode
            run.level_end = len(run.states) - 1 if run.level_end is None else run.level_end
            continue
        if terminated or truncated:
            run.terminated, run.game_over = terminated, ale.game_over(with_truncation=False)
            if stop_at_end or t >= steps:
                break
            env.reset()
            before = GameState.from_ale(ale)
            out.append(Rollout(start_lives=before.lives))
    env.close()
    return out


def rollout(policy, steps: int, seed: int = 0, sticky: float = 0.0, rule: bool = False, frames: bool = False,
            past_level_end: bool = False) -> Rollout:
    """The first episode of :func:`play` (``steps`` at most)."""
    return play(policy, steps, seed, sticky, rule, frames, stop_at_end=True, past_level_end=past_level_end)[0]


def random_play(seed: int, steps: int, rule: bool = False, frames: bool = False, finish: bool = False,
                left: float = 0.0) -> list[Rollout]:
    """The episodes of ``steps`` uniformly random actions, sticky actions 0.25 (the game's setting); a share
    ``left`` of the steps press LEFT instead (running on through the level)."""
    rng = np.random.default_rng(seed)

    def policy(t: int, state: GameState) -> int:
        return LEFT if rng.random() < left else int(rng.integers(18))

    return play(policy, steps, seed=seed, sticky=0.25, rule=rule, frames=frames, stop_at_end=False, finish=finish)


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
    """LEFT, corrected by the rule, runs through level 1 without dying (about 720 steps), where the episode
    ends; the ROM is played on into level 2."""
    return rollout(lambda t, s: LEFT, 1500, rule=True, frames=True, past_level_end=True)


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


RANDOM_STEPS = 2500  # per seed: 15,000 steps and more (the last episodes are played out)
RANDOM_SEEDS = {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.5, 6: 0.5}  # seed: share of forced LEFT (to reach level 2)


@pytest.mark.slow
def test_random_play_ram_catastrophes_are_exactly_the_lives_lost_on_level_one():
    """The RAM verdict against the screen and the lives counter on 15,000+ random steps (seeds 1-6, sticky
    actions 0.25, seeds 5 and 6 pressing LEFT half the time so that episodes also reach the level change; an
    episode started at each end): every lives drop follows exactly one firing by LIVES_LAG_MIN..MAX steps (the
    last life ends the episode at the firing itself), every firing has its drop, and every step is on level 1
    by the pixels: no black screen (mean(frame) < 10) but on the last step of an episode that ended without
    ALE's game over, the level change."""
    steps = firings = level_ends = 0
    for seed, left in RANDOM_SEEDS.items():
        for run in random_play(seed, RANDOM_STEPS, frames=True, finish=True, left=left):
            assert run.terminated, "every episode is played to its end"
            black = np.array(run.means) < BLACK_SCREEN_MEAN
            assert not black[:-1].any(), "level 1 until the episode's last step"
            assert black[-1] == (not run.game_over), "an episode ends at ALE's game over or at the black screen"
            assert_one_firing_per_lost_life(run)
            assert all(s.ram[LEVEL] == 0 for s in run.states[:-1]) and run.states[-1].ram[LEVEL] == black[-1]
            steps += len(run.states)
            firings += len(run.firings())
            level_ends += not run.game_over
    print(f"{steps} steps: {firings} catastrophes, each its lost life; {level_ends} episodes ended with level 1")
    assert steps >= len(RANDOM_SEEDS) * RANDOM_STEPS
    assert firings >= 150 and level_ends >= 3


def test_level_byte_steps_up_exactly_at_the_black_screen_and_the_episode_ends_there(left_to_level_two):
    run = left_to_level_two
    assert run.blocks > 0, "plain LEFT is hit by a truck (see above); the rule steered it clear"
    levels = np.array([int(s.ram[LEVEL]) for s in run.states])
    black = np.array(run.means) < BLACK_SCREEN_MEAN
    change = int(np.argmax(levels > 0))
    assert change > 0 and set(levels[:change]) == {0} and set(levels[change:]) == {1}
    assert run.level_end == change, "the env ended the episode on the step the level byte stepped up"
    assert [ROAD_RUNNER.episode_over(s) for s in run.states] == [t >= change for t in range(len(run.states))]
    assert black[change] and not black[:change].any(), "level 2 starts with the black screen"
    black_end = change + int(np.argmin(black[change:]))
    assert 20 <= black_end - change <= 40 and not black[black_end:].any()
    assert not any(run.fired), "no death on level 1; past the episode's end, level-2 deaths are no catastrophes"
    drops = run.drops()
    assert drops and min(drops) > change and run.lives[-1] == 0, "all three lives were lost on level 2"
    assert any(dying(s) for s in run.states[change:])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dummy", "shared"])
def test_every_backend_ends_the_episode_on_the_step_level_one_ends(left_to_level_two, backend):
    """Two envs (the shared backend steps the second in a worker) replay the run to level 2: both episodes
    end on the step the level byte steps up, terminated and not truncated, on the black screen."""
    run = left_to_level_two
    venv = make_vec_env(ROAD_RUNNER, n_envs=2, seed=0, with_frame=True, backend=backend,
                        repeat_action_probability=0.0).venv
    try:
        venv.reset()
        for t, action in enumerate(run.actions[: run.level_end + 1]):
            _, _, dones, infos = venv.step(np.array([action, action]))
            for info in infos:
                assert np.array_equal(info["game_state"].ram, run.states[t].ram), "the run replays exactly"
            assert dones.tolist() == [t == run.level_end] * 2
        for info in infos:
            assert not info["TimeLimit.truncated"] and info["game_state"].frame.mean() < BLACK_SCREEN_MEAN
        assert all(info["game_state"].ram[LEVEL] == 0 for info in venv.reset_infos), "the next one is on level 1"
    finally:
        venv.close()


def test_simulations_stop_where_the_episode_ends(left_to_level_two):
    """``first_catastrophe`` simulates up to the step level 1 ends and no further: a look-ahead never plays on
    into level 2."""
    run = left_to_level_two
    seen: list[int] = []

    class Watched(RoadRunner):
        def is_catastrophe(self, before: GameState, after: GameState) -> bool:
            seen.append(int(after.ram[LEVEL]))
            return super().is_catastrophe(before, after)

    watched = Watched(**{f.name: getattr(ROAD_RUNNER, f.name) for f in fields(ROAD_RUNNER)})
    env = make_ale_env(ROAD_RUNNER, seed=0, repeat_action_probability=0.0)
    for action in run.actions[: run.level_end - 3]:
        env.step(action)
    later = iter(run.actions[run.level_end - 2 :])  # the run's own actions, played on into level 2
    assert env.first_catastrophe(watched, run.actions[run.level_end - 3], lambda state: next(later), 100) is None
    env.close()
    assert seen == [0, 0, 0, 1], "the three steps left of level 1, then the level change, and no further"


def test_the_games_description_says_where_episodes_end():
    described = ROAD_RUNNER.describe()
    assert "level 1 ends" in described["episode_ends"] and "ram[22]" in described["episode_ends"]
    assert "episodes end where level 1 ends" in described["catastrophe"]


@pytest.mark.slow
def test_rule_with_safe_action_prevents_catastrophes_of_random_play_on_the_same_seeds():
    counts = {}
    for rule in (False, True):
        runs = [run for seed in (11, 12) for run in random_play(seed, 1500, rule=rule)]
        counts[rule] = sum(len(run.firings()) for run in runs)
        assert sum(len(run.states) for run in runs) == 3000
    assert counts[False] >= 20
    assert counts[True] == 0


def test_safe_action_is_never_blocked_and_nothing_is_blocked_off_level_one_or_while_dying(left_to_level_two):
    states = [state for run in random_play(5, 1000, rule=True) for state in run.states] + left_to_level_two.states
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
