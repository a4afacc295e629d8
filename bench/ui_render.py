"""The oversight window's cost: rendering one frame against one env step, and decisions per minute at a pace.

Three figures from one run over real Pong frames:

- the median milliseconds to draw the window (the frame scaled x3, danger zones, status bar, legend),
  and that as a ratio to the median milliseconds of one overseen env step (frames on);
- decisions per minute when nobody presses a key, measured: a HumanOverseer at ``--pace`` (500 ms by
  default, the paper's) reviews ``--decisions`` steps of a live env; 60,000 / pace is the ceiling;
- with ``--screenshot PATH``, the window over a Pong frame with the paddle in the blocking zone,
  saved as an image (run it under a display, e.g. ``xvfb-run``, for a real window; ``--blocker DIR``
  adds a trained Blocker's score).

    SDL_VIDEODRIVER=dummy python bench/ui_render.py [--json]
    xvfb-run -s "-screen 0 1280x1024x24" python bench/ui_render.py --screenshot docs/oversight-window.png
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import pygame
from sidebyside import print_figures

from saferl.games import get_game
from saferl.human_ui import HumanOverseer, Window, load_advisor
from saferl.human_ui.keys import LIVE_LEGEND
from saferl.human_ui.window import TEXT
from saferl.oversight.envs import make_overseen_env

PONG = get_game("pong")
DOWN = 3  # LEFT moves Pong's right paddle down


def pong_frames(steps: int, seed: int = 0) -> tuple[list[np.ndarray], float]:
    """RGB frames of ``steps`` random overseen Pong steps, and the median milliseconds of a step."""
    env = make_overseen_env(PONG, None, seed=seed, with_frame=True)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        times.append(time.perf_counter() - start)
        frames.append(env.ground_truth.game_state.frame)
        if terminated or truncated:
            env.reset()
    env.close()
    return frames, 1000 * statistics.median(times)


def render_ms(frames: list[np.ndarray], scale: int) -> tuple[float, str]:
    """Median milliseconds to draw the whole window once over each of ``frames``, and SDL's video driver."""
    window = Window(scale=scale)
    status = [("proposed: NOOP    if blocked, executes: RIGHT (the game's safe action)", TEXT)] * 6
    times = []
    for frame in frames:
        start = time.perf_counter()
        window.draw(frame, PONG.danger_zones(), status, LIVE_LEGEND, progress=0.5)
        pygame.event.pump()
        times.append(time.perf_counter() - start)
    driver = pygame.display.get_driver()
    window.close()
    return 1000 * statistics.median(times), driver


def decisions_per_minute(pace: int, decisions: int, scale: int) -> float:
    """Decisions a minute of a HumanOverseer at ``pace`` that no key hurries, over a live Pong env."""
    env = make_overseen_env(PONG, HumanOverseer(pace=pace, scale=scale), seed=0)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(decisions):
        if any(env.step(0)[2:4]):
            env.reset()
    elapsed = time.perf_counter() - start
    env.overseer.close()
    env.close()
    return 60 * decisions / elapsed


def screenshot(path: str, scale: int, blocker: str | None = None) -> None:
    """Save the window as a person sees it: the paddle in the blocking zone, the agent proposing DOWN (with the
    score of the Blocker saved in folder ``blocker`` when given)."""
    advisor = load_advisor(blocker, PONG.name) if blocker else None
    overseer = HumanOverseer(pace=1, scale=scale, blocker=advisor)
    env = make_overseen_env(PONG, overseer, seed=3)
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    for step in range(400):  # wander, then go down until the rule would block DOWN
        if step > 40 and PONG.should_block(env.ground_truth.game_state, DOWN):
            break
        if step % 9 == 5:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE))
        env.step(DOWN if step > 40 else int(rng.integers(6)))
    overseer.pace_ms = 500
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_PERIOD))
    env.step(DOWN)  # draws the frame with a full countdown, then '.' allows it
    overseer.window.save(path)
    overseer.close()
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="Pong frames to render (and env steps to time)")
    parser.add_argument("--pace", type=int, default=500, help="ms per frame for the decisions-per-minute run")
    parser.add_argument("--decisions", type=int, default=20, help="decisions of the decisions-per-minute run")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--screenshot", metavar="PATH", help="also save the window over a Pong frame as an image")
    parser.add_argument("--blocker", metavar="DIR", help="a Pong Blocker whose score the screenshot shows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    frames, step_ms = pong_frames(args.frames)
    draw_ms, driver = render_ms(frames, args.scale)
    result: dict[str, Any] = {
        "video_driver": driver,
        "scale": args.scale,
        "render_ms_per_frame": round(draw_ms, 3),
        "env_step_ms": round(step_ms, 3),
        "render_to_env_step": round(draw_ms / step_ms, 2),
        "pace_ms": args.pace,
        "decisions_per_minute": round(decisions_per_minute(args.pace, args.decisions, args.scale), 1),
        "decisions_per_minute_ceiling": round(60_000 / args.pace, 1),
    }
    if args.screenshot:
        screenshot(args.screenshot, args.scale, args.blocker)
        result["screenshot"] = args.screenshot
    print_figures(result, args.json)


if __name__ == "__main__":
    main()
