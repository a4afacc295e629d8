"""The keys of the oversight window and of the label review, and the legends that list them."""

from __future__ import annotations

from enum import Enum

import pygame

from saferl.errors import OversightQuit  # noqa: F401 (raised here; defined with saferl's errors)


class Command(str, Enum):
    """What a key asks for."""

    BLOCK = "block"  # block the proposed action (replacement: the chosen one, else the game's safe action)
    BLOCK_WITH = "block_with"  # block and execute action N (number keys)
    NEXT_CHOICE = "next_choice"  # choose the next replacement action
    PREVIOUS_CHOICE = "previous_choice"
    ALLOW = "allow"  # allow now (one step while paused)
    PAUSE = "pause"
    SLOWER = "slower"
    FASTER = "faster"
    UNDO = "undo"
    LEGEND = "legend"
    QUIT = "quit"
    REDRAW = "redraw"  # the window was uncovered or resized
    # review only
    NEXT = "next"
    PREVIOUS = "previous"
    FIRST = "first"
    LAST = "last"
    NEXT_BLOCK = "next_block"
    NEXT_FALSE_NEGATIVE = "next_false_negative"
    NEXT_FALSE_POSITIVE = "next_false_positive"
    TOGGLE = "toggle"  # relabel: block <-> allow


_NUMBERS = {getattr(pygame, f"K_{n}"): n for n in range(10)} | {getattr(pygame, f"K_KP{n}"): n for n in range(10)}
_COMMON = {
    pygame.K_h: Command.LEGEND,
    pygame.K_BACKSPACE: Command.UNDO,
    pygame.K_ESCAPE: Command.QUIT,
}
LIVE_KEYS: dict[int, Command] = _COMMON | {
    pygame.K_SPACE: Command.BLOCK,
    pygame.K_b: Command.BLOCK,
    pygame.K_RIGHT: Command.NEXT_CHOICE,
    pygame.K_DOWN: Command.NEXT_CHOICE,
    pygame.K_LEFT: Command.PREVIOUS_CHOICE,
    pygame.K_UP: Command.PREVIOUS_CHOICE,
    pygame.K_PERIOD: Command.ALLOW,
    pygame.K_KP_PERIOD: Command.ALLOW,
    pygame.K_p: Command.PAUSE,
    pygame.K_MINUS: Command.SLOWER,
    pygame.K_KP_MINUS: Command.SLOWER,
    pygame.K_PLUS: Command.FASTER,
    pygame.K_EQUALS: Command.FASTER,
    pygame.K_KP_PLUS: Command.FASTER,
} | dict.fromkeys(_NUMBERS, Command.BLOCK_WITH)
REVIEW_KEYS: dict[int, Command] = _COMMON | {
    pygame.K_RIGHT: Command.NEXT,
    pygame.K_PERIOD: Command.NEXT,
    pygame.K_LEFT: Command.PREVIOUS,
    pygame.K_COMMA: Command.PREVIOUS,
    pygame.K_HOME: Command.FIRST,
    pygame.K_END: Command.LAST,
    pygame.K_n: Command.NEXT_BLOCK,
    pygame.K_f: Command.NEXT_FALSE_NEGATIVE,
    pygame.K_p: Command.NEXT_FALSE_POSITIVE,
    pygame.K_SPACE: Command.TOGGLE,
    pygame.K_b: Command.TOGGLE,
}

LIVE_LEGEND: list[tuple[str, str]] = [
    ("space, b", "block (execute the choice)"),
    ("0-9", "block, execute action N"),
    ("arrows", "choose the replacement"),
    (".", "allow now / step if paused"),
    ("p", "pause / resume"),
    ("- / +", "slower / faster"),
    ("backspace", "undo your last block"),
    ("h", "hide / show these keys"),
    ("Esc", "save and quit"),
]
REVIEW_LEGEND: list[tuple[str, str]] = [
    ("left / right", "previous / next label"),
    ("Home / End", "first / last label"),
    ("n", "next block"),
    ("f", "Blocker's false negatives, worst first"),
    ("p", "Blocker's false positives, worst first"),
    ("space, b", "relabel: block <-> allow"),
    ("backspace", "undo your last relabel"),
    ("h", "hide / show these keys"),
    ("Esc", "quit (relabels are saved)"),
]

_EXPOSED = {pygame.VIDEOEXPOSE, pygame.VIDEORESIZE, pygame.WINDOWEXPOSED, pygame.WINDOWRESTORED}


def command_of(event: pygame.event.Event, keys: dict[int, Command]) -> tuple[Command, int | None] | None:
    """The command an event asks for under the key map ``keys`` (with the action number of BLOCK_WITH), or None."""
    if event.type in (pygame.QUIT, pygame.WINDOWCLOSE):
        return Command.QUIT, None
    if event.type in _EXPOSED:
        return Command.REDRAW, None
    if event.type != pygame.KEYDOWN:
        return None
    command = keys.get(event.key)
    if command is None:
        return None
    return command, _NUMBERS[event.key] if command is Command.BLOCK_WITH else None
