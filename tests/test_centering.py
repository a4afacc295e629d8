"""Blocker inputs centred on the player: the sprite found from pixels is where the RAM puts it, centred frames put
it in the middle column, and a Blocker trained on them through the CLI keeps the setting in its metadata and
oversees with it (the real Space Invaders ROM)."""

import json

import numpy as np
import pytest

from helpers import last_json, saferl
from saferl.blocker import default_preprocessing, load_labels
from saferl.blocker.data import Preprocessing, centered
from saferl.env.ale import make_ale_env
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.games.space_invaders import RAM_SHIP_X, SHIP_COLOR, SHIP_TIP_ROW

SPACE_INVADERS = get_game("space_invaders")


def random_frames(steps, seed):
    """(frame, ram) after each of ``steps`` random steps of Space Invaders."""
    env = make_ale_env(SPACE_INVADERS)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        frame, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        out.append((frame, env.unwrapped.ale.getRAM().copy()))
        if terminated or truncated:
            env.reset()
    env.close()
    return out


def test_the_sprite_column_read_from_pixels_is_the_cannon_column_in_ram():
    seen = random_frames(400, seed=3)
    columns = [(SPACE_INVADERS.player_sprite.column(frame), int(ram[RAM_SHIP_X]) + 2) for frame, ram in seen]
    found = [(pixels, ram) for pixels, ram in columns if pixels is not None]
    assert len(found) > 0.8 * len(seen), "the cannon's tip shows in most frames"
    assert all(pixels == ram for pixels, ram in found)
    assert len({ram for _, ram in found}) > 10, "the cannon moved: the check covers many columns"


def test_centred_frames_put_the_cannon_tip_in_the_middle_column_and_keep_what_is_around_it():
    sprite = SPACE_INVADERS.player_sprite
    for frame, ram in random_frames(120, seed=5)[::7]:
        tip = int(ram[RAM_SHIP_X]) + 2
        if sprite.column(frame) is None:
            assert centered(frame, sprite) is frame
            continue
        out = centered(frame, sprite)
        assert tuple(out[SHIP_TIP_ROW, 80]) == SHIP_COLOR
        shift = 80 - tip
        for column in range(160):  # every pixel moved by the same amount; black where nothing shifted in
            source = column - shift
            expected = frame[:, source] if 0 <= source < 160 else np.zeros_like(frame[:, 0])
            assert np.array_equal(out[:, column], expected)


def test_centring_is_the_default_where_the_game_says_where_its_player_is_and_refused_where_it_does_not():
    assert default_preprocessing("space_invaders").center == SPACE_INVADERS.player_sprite
    assert default_preprocessing("space_invaders", center=False).center is None
    road_runner = get_game("road_runner").player_sprite
    assert default_preprocessing("road_runner").center == road_runner and road_runner.vertical
    assert default_preprocessing("road_runner", center=False).center is None
    with pytest.raises(SaferlError, match="--center"):
        default_preprocessing("pong", center=True)
    result = saferl("train-blocker", "nowhere", "--game", "pong", "--center", "--out", "unused", check_rc=2)
    assert "--center" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_blocker_trained_on_centred_inputs_keeps_them_and_oversees_with_them(tmp_path):
    labels, folder = tmp_path / "labels", tmp_path / "blocker"
    saferl("oversee", "--game", "space_invaders", "--overseer", "scripted", "--steps", "2500", "--seed", "2",
           "--out", str(labels), "--json")
    summary = last_json(saferl("train-blocker", str(labels), "--game", "space_invaders", "--center", "--folds", "2",
                               "--epochs", "1", "--threads", "1", "--out", str(folder), "--no-progress", "--json"))
    assert summary["labels"] == 2500
    metadata = json.loads((folder / "member-0" / "blocker.json").read_text())
    assert metadata["preprocessing"]["center"] == {"top": SHIP_TIP_ROW, "bottom": SHIP_TIP_ROW + 1,
                                                   "color": list(SHIP_COLOR), "vertical": False}
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
    inputs = load_labels([labels], preprocessing=preprocessing).inputs(np.arange(0, 2500, 50))
    tips = inputs[:, :, SHIP_TIP_ROW - 35, 80]  # the crop starts at row 35
    assert (tips == np.array(SHIP_COLOR)[None]).all(axis=1).mean() > 0.8
    run = last_json(saferl("oversee", "--game", "space_invaders", "--overseer", f"blocker:{folder}", "--steps", "200",
                           "--seed", "9", "--json"))
    assert run["steps"] == 200 and run["blocks"] > 0


def test_road_runner_frames_centre_on_the_runner_in_both_directions():
    """The runner moves up and down the road too: its row and column read from pixels follow RAM's y and x, and a
    centred frame puts the runner's pixels in the middle row and column, every pixel moved by the same (dy, dx)."""
    from saferl.games.road_runner import LEVEL, PLAYER_X, PLAYER_Y

    game = get_game("road_runner")
    sprite = game.player_sprite
    env = make_ale_env(game)
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    found, checked = [], 0
    for step in range(600):
        frame, _, terminated, truncated, _ = env.step(int(rng.integers(18)))
        if terminated or truncated:
            env.reset()
        ram = env.unwrapped.ale.getRAM()
        if ram[LEVEL] != 0 or sprite.column(frame) is None:
            continue
        found.append((sprite.column(frame) - int(ram[PLAYER_X]), sprite.row(frame) - int(ram[PLAYER_Y])))
        if step % 25:
            continue
        out = centered(frame, sprite)
        assert sprite.column(out) == 80 and sprite.row(out) in (104, 105, 106)
        dy, dx = 105 - sprite.row(frame), 80 - sprite.column(frame)
        inside = frame[max(0, -dy):210 - max(0, dy), max(0, -dx):160 - max(0, dx)]
        assert np.array_equal(out[max(0, dy):210 + min(0, dy), max(0, dx):160 + min(0, dx)], inside)
        checked += 1
    env.close()
    assert len(found) > 400 and checked >= 10
    offsets = np.array(found)
    assert len(np.unique(offsets[:, 1])) <= 12 and np.percentile(np.abs(offsets - np.median(offsets, 0)), 95) <= 4, \
        "the pixels' position is RAM's plus a fixed offset, within a few pixels"
    assert default_preprocessing("road_runner", center=True).center == sprite and sprite.vertical
