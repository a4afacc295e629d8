"""Bytes per label and append/read throughput of the label store, on real Atari frames.

Plays Pong and Space Invaders with random actions, stores one label per frame (full 210x160 RGB),
and measures side by side: bytes per label, appends per second (no fsync, and fsync every label),
opening (index scan) and reading frames back.

    python bench/label_bytes.py [--frames 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np

from saferl.labels.format import Label
from saferl.labels.store import LabelStore

GAMES = {"pong": "ALE/Pong-v5", "space_invaders": "ALE/SpaceInvaders-v5"}
FSYNC_LABELS = 200


def play(env_id: str, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """``n`` real RGB frames of random play, and the game's action names."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    frames = []
    while len(frames) < n:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    names = list(env.unwrapped.get_action_meanings())
    env.close()
    return frames, names


def label(frame: np.ndarray, i: int) -> Label:
    return Label(frame, i % 2, i % 2, i % 10 == 0, False, i // 500, i % 500, "scripted", 0.0, 0.5)


def measure(game: str, frames: list[np.ndarray], actions: list[str], root: Path) -> dict[str, float]:
    """The numbers of one game."""
    n = len(frames)
    start = time.perf_counter()
    with LabelStore.create(root / game, game, actions) as store:
        for i, frame in enumerate(frames):
            store.append(label(frame, i))
    append_s = time.perf_counter() - start

    start = time.perf_counter()
    with LabelStore.create(root / f"{game}-fsync", game, actions, fsync_every=1) as store:
        for i, frame in enumerate(frames[:FSYNC_LABELS]):
            store.append(label(frame, i))
    fsync_s = time.perf_counter() - start

    start = time.perf_counter()
    with LabelStore.open(root / game, game) as store:
        open_s = time.perf_counter() - start
        start = time.perf_counter()
        for batch in range(0, n, 256):
            store.frames(range(batch, min(batch + 256, n)))
        read_s = time.perf_counter() - start
        summary = store.summary()
    return {
        "labels": n,
        "bytes_per_label": summary["bytes_per_label"],
        "raw_frame_bytes": frames[0].nbytes,
        "compression_ratio": frames[0].nbytes / summary["bytes_per_label"],
        "append_per_s": n / append_s,
        "append_fsync_each_per_s": min(n, FSYNC_LABELS) / fsync_s,
        "open_labels_per_s": n / open_s,
        "read_frames_per_s": n / read_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000, help="labels per game")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    gym.register_envs(ale_py)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for game, env_id in GAMES.items():
            frames, actions = play(env_id, args.frames)
            results[game] = measure(game, frames, actions, Path(tmp))
    for game, r in results.items():
        print(f"{game:15s} {r['bytes_per_label']:8.0f} B/label (raw {r['raw_frame_bytes']} B, "
              f"{r['compression_ratio']:.0f}x)  append {r['append_per_s']:7.0f}/s  "
              f"append+fsync {r['append_fsync_each_per_s']:6.0f}/s  open {r['open_labels_per_s']:7.0f}/s  "
              f"read {r['read_frames_per_s']:6.0f} frames/s")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
