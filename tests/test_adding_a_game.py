"""CONTRIBUTING.md's "Adding a game" walkthrough, followed step by step for a toy fourth game on Breakout's real ROM.

The toy's catastrophe: Breakout's paddle in the left strip of the field (its x position, ``ram[72]``, below
``CATASTROPHE_BELOW``; measured range 55 to 191 in random play, up to 24 px a step). The rule blocks every action
but RIGHT while the paddle is within two of its fastest steps of the strip, and executes RIGHT instead.
"""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from saferl.cli import main
from saferl.games import GAMES, Game, GameState, Rect, get_game

# ----- step 1: the module (here inside the test) -----

SAFE_ACTION = 2  # RIGHT in Breakout's minimal action set: NOOP, FIRE, RIGHT, LEFT
CATASTROPHE_BELOW = 70
BLOCK_BELOW = CATASTROPHE_BELOW + 2 * 24 + 8


def paddle_x(state: GameState) -> int:
    """The paddle's x position, from RAM (``ram[72]``: 55 at the left wall, 191 at the right one)."""
    return int(state.ram[72])


@dataclass(frozen=True)
class Toy(Game):
    """Breakout with a toy catastrophe: the paddle in the left strip."""

    def is_catastrophe(self, before: GameState, after: GameState) -> bool:
        return paddle_x(after) < CATASTROPHE_BELOW

    def should_block(self, state: GameState, action: int) -> bool:
        return paddle_x(state) < BLOCK_BELOW and action != SAFE_ACTION

    def safe_action(self, state: GameState, action: int) -> int:
        return SAFE_ACTION

    def danger_zones(self, state: GameState | None = None) -> list[Rect]:
        return [Rect(189, 194, 0, CATASTROPHE_BELOW - 47, "catastrophe")]


TOY = Toy(name="toy", env_id="ALE/Breakout-v5", catastrophe_text="the paddle's x (ram[72]) below 70",
          blocking_rule_text="block every action but RIGHT while the paddle's x is below 126; execute RIGHT instead")


# ----- step 2: register it for the test's duration -----


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Game:
    monkeypatch.setitem(GAMES, "toy", TOY)
    return TOY


def run(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """``saferl ARGS --json`` in this process (where the toy is registered): the summary."""
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def state(x: int) -> GameState:
    ram = np.zeros(128, np.uint8)
    ram[72] = x
    return GameState(ram, 5)


# ----- step 3: the rule is the rule -----


def test_the_rule_and_the_catastrophe_on_either_side_of_their_lines(toy: Game) -> None:
    assert get_game("toy") is toy
    assert toy.is_catastrophe(state(100), state(69)) and not toy.is_catastrophe(state(100), state(70))
    assert toy.should_block(state(125), 3) and toy.should_block(state(125), 0)
    assert not toy.should_block(state(125), SAFE_ACTION) and not toy.should_block(state(126), 3)
    assert toy.safe_action(state(60), 3) == SAFE_ACTION


# ----- steps 4 and 5: end to end -----


@pytest.mark.slow
def test_saferl_knows_the_toy_and_the_scripted_overseer_lets_no_catastrophe_through(
        toy: Game, capsys: pytest.CaptureFixture[str]) -> None:
    """Random play leans left (LEFT twice as likely), so the strip is reached often without oversight."""
    assert "toy" in run(capsys, "games")["games"]
    common = ["--game", "toy", "--steps", "1500", "--seed", "1", "--policy", "lean:LEFT:0.5", "--no-progress"]
    bare = run(capsys, "oversee", "--overseer", "none", *common)
    assert bare["game"] == "toy" and bare["catastrophes"] > 100
    overseen = run(capsys, "oversee", "--overseer", "scripted", *common)
    assert overseen["blocks"] > 100 and overseen["catastrophes"] == 0
    assert overseen["steps"] == 1500
