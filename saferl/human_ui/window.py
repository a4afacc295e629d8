"""The pygame window: an Atari frame scaled up with the game's danger zones over it, a status bar, a legend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pygame

from saferl.errors import SaferlError
from saferl.games.base import Rect

DEFAULT_SCALE = 3
MAX_SCALE = 8
STATUS_LINES = 6
MIN_STATUS_WIDTH = 520
LEGEND_WIDTH = 330
FONT_SIZE = 22
PAD = 6
BAR_HEIGHT = 5

BACKGROUND = (24, 24, 28)
TEXT = (230, 230, 230)
DIM = (150, 150, 160)
BLOCK = (255, 80, 70)
ALLOW = (110, 220, 120)
NOTE = (255, 200, 60)
ZONE_COLORS = ((255, 170, 0), (255, 40, 40), (200, 60, 255))
ZONE_ALPHA = 70

Line = tuple[str, tuple[int, int, int]]
"""One status line: its text and colour."""


def check_scale(scale: int) -> int:
    """``scale`` when it is a whole zoom factor the window can show; else a SaferlError naming ``--scale``."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise SaferlError(f"--scale must be a whole number from 1 to {MAX_SCALE} (the zoom of the frame), not {scale!r}")
    return scale


@lru_cache(maxsize=8)
def zone_overlay(zones: tuple[Rect, ...], scale: int, size: tuple[int, int]) -> pygame.Surface:
    """A transparent surface of ``size`` with ``zones`` (frame pixels) filled and outlined, scaled by ``scale``."""
    overlay = pygame.Surface(size, pygame.SRCALPHA)
    for k, zone in enumerate(zones):
        color = ZONE_COLORS[k % len(ZONE_COLORS)]
        rect = pygame.Rect(zone.left * scale, zone.top * scale, (zone.right - zone.left) * scale,
                           (zone.bottom - zone.top) * scale)
        overlay.fill((*color, ZONE_ALPHA), rect)
        pygame.draw.rect(overlay, (*color, 255), rect, width=2)
    return overlay


def render_frame(frame: np.ndarray, scale: int, zones: Sequence[Rect] = ()) -> pygame.Surface:
    """The RGB ``frame`` (H x W x 3 uint8) scaled by ``scale`` (nearest pixel), with ``zones`` drawn over it."""
    height, width = frame.shape[:2]
    surface = pygame.transform.scale_by(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), scale)
    if zones:
        surface.blit(zone_overlay(tuple(zones), scale, (width * scale, height * scale)), (0, 0))
    return surface


class Window:
    """The oversight window: ``draw`` a frame with its status, then ``wait_event`` for the person.

    :param frame_shape: the frames' (height, width).
    :param scale: the zoom of the frame.
    :param title: the window's title.
    :param legend: show the legend beside the frame at first.
    """

    def __init__(self, frame_shape: tuple[int, int] = (210, 160), scale: int = DEFAULT_SCALE,
                 title: str = "saferl", legend: bool = True) -> None:
        self.frame_height, self.frame_width = frame_shape
        self.scale = check_scale(scale)
        self.title = title
        self.legend = legend
        self.screen: pygame.Surface | None = None
        self.font: pygame.font.Font | None = None

    @property
    def status_width(self) -> int:
        """The width of the frame and status bar (the legend is to their right)."""
        return max(self.frame_width * self.scale, MIN_STATUS_WIDTH)

    @property
    def status_top(self) -> int:
        return self.frame_height * self.scale

    def size(self) -> tuple[int, int]:
        """The window's size in pixels, with or without the legend."""
        line = self.font.get_linesize() if self.font else FONT_SIZE
        height = self.status_top + BAR_HEIGHT + 2 * PAD + STATUS_LINES * line
        return self.status_width + (LEGEND_WIDTH if self.legend else 0), height

    def open(self) -> None:
        """Open the window (again after ``close``); a SaferlError when there is no display to open it on."""
        if self.screen is not None:
            return
        try:
            pygame.display.init()
            pygame.font.init()
            self.font = pygame.font.Font(None, FONT_SIZE)
            self.screen = pygame.display.set_mode(self.size())
        except pygame.error as err:
            raise SaferlError(f"cannot open the oversight window ({err}): run it on a desktop, or under "
                              "xvfb-run; DISPLAY is " + repr(os.environ.get("DISPLAY"))) from None
        pygame.display.set_caption(self.title)

    def toggle_legend(self) -> None:
        """Show or hide the legend (the window widens or narrows)."""
        self.legend = not self.legend
        if self.screen is not None:
            self.screen = pygame.display.set_mode(self.size())

    def draw(self, frame: np.ndarray, zones: Sequence[Rect], status: Sequence[Line],
             legend: Sequence[tuple[str, str]], progress: float | None = None) -> None:
        """Show ``frame`` with ``zones``, the ``status`` lines, the ``legend`` (when shown) and a countdown bar."""
        self.open()
        screen = self.screen
        screen.fill(BACKGROUND)
        screen.blit(render_frame(frame, self.scale, zones), (0, 0))
        line = self.font.get_linesize()
        for k, (text, color) in enumerate(status[:STATUS_LINES]):
            screen.blit(self.font.render(text, True, color), (PAD, self.status_top + BAR_HEIGHT + PAD + k * line))
        if self.legend:
            self._legend(legend, zones)
        self._bar(progress)
        pygame.display.flip()

    def _legend(self, legend: Sequence[tuple[str, str]], zones: Sequence[Rect]) -> None:
        """The keys, then what the zones' colours mean, in a column right of the frame."""
        x, line = self.status_width + PAD, self.font.get_linesize()
        rows = [("keys", "", DIM), *((keys, meaning, NOTE) for keys, meaning in legend), ("", "", DIM)]
        rows += [("zones", "", DIM)] + [("", zone.label, ZONE_COLORS[k % len(ZONE_COLORS)]) for k, zone in enumerate(zones)]
        for k, (keys, meaning, color) in enumerate(rows):
            y = PAD + k * line
            self.screen.blit(self.font.render(keys, True, color), (x, y))
            if keys == "" and meaning:  # a zone: its colour, then its name
                self.screen.fill(color, pygame.Rect(x, y + 2, 80, line - 6))
            self.screen.blit(self.font.render(meaning, True, TEXT), (x + 95, y))

    def show_progress(self, progress: float | None) -> None:
        """Redraw only the countdown bar: the ``progress`` fraction of the time left (None: no bar)."""
        if self.screen is not None:
            pygame.display.update(self._bar(progress))

    def _bar(self, progress: float | None) -> pygame.Rect:
        area = pygame.Rect(0, self.status_top, self.status_width, BAR_HEIGHT)
        self.screen.fill(BACKGROUND, area)
        if progress is not None:
            filled = round(self.status_width * min(max(progress, 0.0), 1.0))
            self.screen.fill(NOTE, pygame.Rect(0, self.status_top, filled, BAR_HEIGHT))
        return area

    def wait_event(self, timeout_ms: int | None = None) -> pygame.event.Event | None:
        """The next event, waiting at most ``timeout_ms`` (None: until one comes); None when none came."""
        if timeout_ms is None:
            event = pygame.event.wait()
        elif timeout_ms >= 1:
            event = pygame.event.wait(int(timeout_ms))
        else:  # pygame waits forever on a timeout of 0
            event = pygame.event.poll()
        return None if event.type == pygame.NOEVENT else event

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save what the window shows as an image (PNG by the name's extension)."""
        if self.screen is None:
            raise SaferlError("the oversight window is not open: draw a frame before saving it")
        pygame.image.save(self.screen, os.fspath(path))

    def close(self) -> None:
        """Close the window (safe to call twice)."""
        if self.screen is not None:
            self.screen = None
            pygame.display.quit()
