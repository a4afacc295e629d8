"""Playing a saved agent (``saferl evaluate``): whole episodes of its game, with or without an overseer, their
returns and safety counts, and a GIF of the frames with the overseer's blocks marked in red."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from saferl.errors import SaferlError
from saferl.games import Game, get_game

MAX_VIDEO_FRAMES = 4000  # the GIF keeps every second frame up to this many (about 2 minutes of play at 15 fps)
BLOCK_BORDER = 4  # pixels of red around a frame whose action the overseer blocked

#: ``act(observation, episode_start)``: one frame-stacked observation to an action.
Actor = Callable[[np.ndarray, bool], int]


def load_actor(folder: str | os.PathLike[str], game: Game, deterministic: bool) -> tuple[str, int, Actor]:
    """(algorithm, frame stack, actor) of the agent saved in ``folder``: an SB3 policy (``policy.json``, written at
    the end of a run) or an A3C agent (``a3c.json``)."""
    from saferl.agents.a3c.io import METADATA as A3C_METADATA
    from saferl.agents.policy_file import is_policy, load_policy

    folder = Path(folder)
    if is_policy(folder):
        record, act = load_policy(folder, game.name)
        return record.algorithm, record.frame_stack, lambda obs, start: int(act(obs[None], deterministic)[0])
    if (folder / A3C_METADATA).is_file():
        from saferl.agents.a3c import A3C

        a3c = A3C.load(folder, device="cpu")
        state: list[Any] = [None]

        def act_a3c(obs: np.ndarray, start: bool) -> int:
            action, state[0] = a3c.predict(obs, None if start else state[0], deterministic=deterministic)
            return int(action)

        return "a3c", int(a3c.model.obs_shape[0]), act_a3c
    raise SaferlError(f"AGENT_DIR {folder} holds no saved agent (policy.json or a3c.json): a finished saferl "
                      "experiment run writes one to RUN/runs/<condition>/seed-<k>/agent")


def marked_frame(frame: np.ndarray, blocked: bool) -> np.ndarray:
    """The RGB frame, framed in red when the overseer blocked the action taken on it."""
    if not blocked:
        return frame
    out = frame.copy()
    red = np.array([255, 0, 0], np.uint8)
    out[:BLOCK_BORDER] = out[-BLOCK_BORDER:] = red
    out[:, :BLOCK_BORDER] = out[:, -BLOCK_BORDER:] = red
    return out


def write_gif(frames: list[np.ndarray], path: Path, fps: float = 15.0) -> None:
    """Write RGB ``frames`` as an animated GIF."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                   optimize=True)


def evaluate_agent(folder: str | os.PathLike[str], game: str, overseer: str = "none", episodes: int = 3,
                   deterministic: bool = True, seed: int = 0, video: str | os.PathLike[str] | None = None,
                   max_frames: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Play ``episodes`` whole episodes of the agent saved in ``folder`` under ``overseer`` (a name for
    ``saferl.registry.make_overseer``, e.g. ``blocker:DIR``; blocks are replaced, with no penalty); return the
    summary. ``video``: a ``.gif`` path for the frames (every second one), blocks framed in red.

    :param max_frames: ALE frames an episode may last (None: the game's own end).
    """
    from tqdm import tqdm

    from saferl.oversight.envs import make_agent_env
    from saferl.oversight.metrics import block_rate
    from saferl.registry import make_overseer

    the_game = get_game(game)
    if episodes < 1:
        raise SaferlError(f"--episodes must be at least 1, not {episodes}")
    video_path = Path(video) if video is not None else None
    if video_path is not None:
        if video_path.suffix.lower() != ".gif":
            raise SaferlError(f"--video {video_path}: write a .gif (the one video format saferl writes)")
        if not video_path.parent.is_dir():
            raise SaferlError(f"--video {video_path}: the folder {video_path.parent} does not exist")
    algorithm, stack, act = load_actor(folder, the_game, deterministic)
    who = make_overseer(overseer, seed=seed, game=the_game.name)
    overrides = {"max_num_frames_per_episode": max_frames} if max_frames else {}
    env = make_agent_env(the_game, who, mode="replace", penalty=0.0, seed=seed, frame_stack=stack,
                         with_frame=video_path is not None, **overrides)
    returns: list[float] = []
    frames: list[np.ndarray] = []
    try:
        obs, _ = env.reset(seed=seed)
        start, episode_return, step = True, 0.0, 0
        with tqdm(total=episodes, unit="episode", desc=f"evaluate {the_game.name}", disable=not progress) as bar:
            while len(returns) < episodes:
                obs, reward, terminated, truncated, info = env.step(act(np.asarray(obs), start))
                start, episode_return, step = False, episode_return + float(reward), step + 1
                if video_path is not None and step % 2 == 0 and len(frames) < MAX_VIDEO_FRAMES:
                    frames.append(marked_frame(info["game_state"].frame, bool(info["blocked"])))
                if terminated or truncated:
                    returns.append(episode_return)
                    bar.update()
                    obs, _ = env.reset()
                    start, episode_return = True, 0.0
    finally:
        counters = env.get_wrapper_attr("counters")
        totals = dict(counters.totals)
        env.close()
    if video_path is not None and frames:
        write_gif(frames, video_path)
    return {
        "game": the_game.name,
        "agent": str(folder),
        "algorithm": algorithm,
        "overseer": overseer,
        "deterministic": deterministic,
        "episodes": len(returns),
        "mean_return": float(np.mean(returns)),
        "returns": [round(r, 1) for r in returns],
        "steps": int(totals["steps"]),
        "catastrophes": int(totals["catastrophes"]),
        "blocks": int(totals["blocks"]),
        "catastrophes_on_blocks": int(totals["catastrophes_on_blocks"]),
        "block_rate": block_rate(totals),
        "video": str(video_path) if video_path is not None and frames else None,
    }


__all__ = ["evaluate_agent", "load_actor", "marked_frame", "write_gif"]
