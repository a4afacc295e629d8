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


def test_centring_is_space_invaders_default_and_refused_for_a_game_that_does_not_say_where_its_player_is():
    assert default_preprocessing("space_invaders").center == SPACE_INVADERS.player_sprite
    assert default_preprocessing("space_invaders", center=False).center is None
    assert default_preprocessing("road_runner").center is None
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
                                                   "color": list(SHIP_COLOR)}
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
    inputs = load_labels([labels], preprocessing=preprocessing).inputs(np.arange(0, 2500, 50))
    tips = inputs[:, :, SHIP_TIP_ROW - 35, 80]  # the crop starts at row 35
    assert (tips == np.array(SHIP_COLOR)[None]).all(axis=1).mean() > 0.8
    run = last_json(saferl("oversee", "--game", "space_invaders", "--overseer", f"blocker:{folder}", "--steps", "200",
                           "--seed", "9", "--json"))
    assert run["steps"] == 200 and run["blocks"] > 0
