"""Every benchmark at a size that takes a few minutes on 2 cores; the headline figures as one JSON object last.

1. ``blocker_training``: Blocker training throughput (labels/s, 1 vs 2 torch threads); also fits the
   Blocker the next two use (6,000 random-play labels under the scripted rule), unless ``--blocker DIR``.
2. ``env_speed``: 8 envs' steps/s: the C++ AtariVectorEnv, AsyncVectorEnv + AtariWrapper, saferl's
   backends bare, and SharedMemoryVecEnv under oversight with each overseer.
3. ``training_fps``: DQN, PPO and A2C training fps with that Blocker overseeing against without oversight.

Every figure is a ratio of configurations measured side by side in the same run. The JSON holds each
benchmark's figures under its prefix (``env_speed.*``, ...) and the headline figures:
``oversight_vec_vs_async`` (SharedMemoryVecEnv with oversight and the scripted overseer, over
AsyncVectorEnv + AtariWrapper with none; target >= 1.3), ``oversight_vec_vs_cpp`` (the same over the
bare C++ AtariVectorEnv), ``oversight_vec_vs_async_by_cpu`` (the first from CPU time per step),
``blocker_training_fps_ratio`` (Blocker-overseen training fps over
unoverseen, the lowest of DQN, PPO and A2C; target >= 0.9), ``blocker_training_cpu_ratio`` (the same
from CPU time per step, which the load of a busy machine moves less), ``blocker_acting_fps_ratio``
(the same counting only the time spent acting, not updating: what a learner with free updates would see),
``blocker_acting_learner_cpu_ratio`` (CPU time per acting step of the learner's own process, not its env
workers, unoverseen over overseen: what the review costs the process the learner waits on), and A2C's own
four, the learner of ``experiments/pong_learning.yml``: ``a2c_training_fps_ratio``, ``a2c_training_cpu_ratio``,
``a2c_acting_fps_ratio`` and ``a2c_acting_learner_cpu_ratio`` (target >= 0.95 training and acting).

    python bench/run.py [--game pong] [--scale 1.0] [--blocker DIR] [--json]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import blocker_training
import env_speed
import training_fps
from sidebyside import bench_parser, print_json


def run(game: str = "pong", scale: float = 1.0, rounds: int = 3, blocker: str | None = None) -> dict[str, Any]:
    """Run the three benchmarks; their figures, prefixed, and the headline figures. ``blocker``: a trained
    Blocker folder for the last two (None: the one fitted in the first)."""
    result: dict[str, Any] = {"game": game, "scale": scale, "rounds": rounds}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fitted = str(Path(tmp) / "blocker")
        print("== Blocker training throughput")
        parts = {"blocker_training": blocker_training.measure(game, labels=max(800, int(6000 * scale)), epochs=1,
                                                              rounds=rounds, out=None if blocker else fitted)}
        blocker = blocker or fitted
        print("== env steps per second (8 envs)")
        parts["env_speed"] = env_speed.measure(game, batches=max(5, int(150 * scale)), rounds=rounds, blocker=blocker)
        print("== training fps with and without the Blocker")
        parts["training_fps"] = training_fps.measure(blocker, game, rounds=rounds, scale=scale)
    for name, figures in parts.items():
        result.update({f"{name}.{key}": value for key, value in figures.items()})
    result["oversight_vec_vs_async"] = parts["env_speed"]["oversight_vec_vs_async"]
    result["oversight_vec_vs_cpp"] = parts["env_speed"]["oversight_vec_vs_cpp"]
    result["oversight_vec_vs_async_by_cpu"] = parts["env_speed"]["oversight_vec_vs_async_by_cpu"]
    result["blocker_training_fps_ratio"] = parts["training_fps"]["blocker_training_fps_ratio"]
    result["blocker_training_cpu_ratio"] = parts["training_fps"]["blocker_training_cpu_ratio"]
    result["blocker_acting_fps_ratio"] = parts["training_fps"]["blocker_acting_fps_ratio"]
    result["blocker_acting_learner_cpu_ratio"] = parts["training_fps"]["blocker_acting_learner_cpu_ratio"]
    for key in training_fps.A2C_HEADLINES:
        result[key] = parts["training_fps"][key]
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"== oversight on, 8 envs: x{result['oversight_vec_vs_async']} of AsyncVectorEnv+AtariWrapper (target >= 1.3), "
          f"x{result['oversight_vec_vs_async_by_cpu']} by CPU per step, x{result['oversight_vec_vs_cpp']} of the C++ "
          f"AtariVectorEnv; Blocker-overseen training: "
          f"x{result['blocker_training_fps_ratio']} of unoverseen fps (target >= 0.9), x{result['blocker_training_cpu_ratio']} "
          f"by CPU per step, x{result['blocker_acting_fps_ratio']} acting only; A2C: x{result['a2c_training_fps_ratio']} "
          f"training, x{result['a2c_acting_fps_ratio']} acting only (target >= 0.95), x{result['a2c_acting_learner_cpu_ratio']} "
          f"by the learner process's CPU per acting step; {result['seconds']:.0f} s")
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every measurement's size")
    parser.add_argument("--blocker", help="a trained Blocker folder to oversee with (default: one fitted here)")
    args = parser.parse_args()
    print_json(run(args.game, args.scale, args.rounds, args.blocker), args.json)


if __name__ == "__main__":
    main()
