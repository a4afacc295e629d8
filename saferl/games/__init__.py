"""The games saferl knows, by name: ``get_game("pong")``."""

from __future__ import annotations

from saferl.errors import SaferlError
from saferl.games.base import Game, GameState, PlayerSprite, Rect
from saferl.games.pong import PONG, PONG_NO_STICKY
from saferl.games.road_runner import ROAD_RUNNER
from saferl.games.space_invaders import SPACE_INVADERS

GAMES: dict[str, Game] = {game.name: game for game in (PONG, PONG_NO_STICKY, SPACE_INVADERS, ROAD_RUNNER)}


def get_game(name: str) -> Game:
    """The game called ``name``; a clear error lists the known ones."""
    try:
        return GAMES[name]
    except KeyError:
        raise SaferlError(f"unknown game {name!r} (--game): choose one of {', '.join(sorted(GAMES))}") from None


__all__ = ["GAMES", "Game", "GameState", "PlayerSprite", "Rect", "get_game"]
