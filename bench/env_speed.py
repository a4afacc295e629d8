"""Env steps per second of 8 vectorized envs as an agent sees them, every configuration side by side.

Each configuration steps ``N_ENVS`` envs of the game with random actions, observations as an agent
sees them (84x84 gray, the last 4 stacked):

- ``cpp_vector``: ale-py's C++ AtariVectorEnv (no RAM, no frames, no ground truth: the speed anchor);
- ``async_atari_wrapper``: gymnasium's AsyncVectorEnv (shared memory) of SB3's AtariWrapper, no oversight;
- ``subproc_bare`` / ``dummy_bare`` / ``shared_bare``: saferl's envs (ground truth computed in each
  env) on SB3's SubprocVecEnv, DummyVecEnv, and saferl's SharedMemoryVecEnv, without the oversight wrapper;
- ``shared_none`` / ``shared_scripted`` / ``shared_blocker``: SharedMemoryVecEnv under VecOversight with no
  overseer (counting only), the scripted rule, and a Blocker (frames on);
- ``dummy_lookahead``: the look-ahead overseer, which simulates the envs and so runs them in process.

All are built first, then measured in interleaved rounds; medians are reported with their ratios
to ``async_atari_wrapper`` and ``cpp_vector``, and the CPU time per step of the bench process and
its workers together (what the envs cost, whatever share of the cores a busy machine gives them). The
Blocker is ``--blocker DIR`` or an untrained one of the game's size that never blocks (the review's cost only).

    python bench/env_speed.py --game pong [--blocker DIR] [--workers 1,4] [--json]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from sidebyside import bench_parser, interleaved, load_or_untrained_blocker, print_json, rate, ratio

N_ENVS = 8
STACK = 4


@dataclass
class Subject:
    """A vectorized env behind one ``step(actions)`` call (an SB3 VecEnv or a gymnasium VectorEnv)."""

    step: Callable[[np.ndarray], Any]
    close: Callable[[], None]
    n_actions: int


def sb3_subject(venv: Any) -> Subject:
    """An SB3 VecEnv as the agent sees it (stacked), reset."""
    from stable_baselines3.common.vec_env import VecFrameStack

    stacked = VecFrameStack(venv, STACK)
    stacked.reset()
    return Subject(stacked.step, stacked.close, int(venv.action_space.n))


def gym_subject(env: gym.vector.VectorEnv) -> Subject:
    env.reset(seed=0)
    return Subject(env.step, env.close, int(env.single_action_space.n))


def cpp_vector(game: Any) -> Subject:
    """ale-py's C++ AtariVectorEnv with the v5 settings (frameskip 4, sticky actions 0.25), stacked 4."""
    import ale_py

    gym.register_envs(ale_py)
    return gym_subject(gym.make_vec(game.env_id, num_envs=N_ENVS, vectorization_mode="vector_entry_point"))


def async_atari_wrapper(game: Any) -> Subject:
    """gymnasium's AsyncVectorEnv (shared memory) of SB3's AtariWrapper over ``<Game>NoFrameskip-v4``, stacked 4."""
    import ale_py
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    gym.register_envs(ale_py)
    env_id = game.env_id.split("/")[-1].split("-")[0] + "NoFrameskip-v4"

    def thunk() -> gym.Env:
        return gym.wrappers.FrameStackObservation(AtariWrapper(gym.make(env_id)), STACK)

    return gym_subject(gym.vector.AsyncVectorEnv([thunk] * N_ENVS, shared_memory=True))


def saferl_vec(game: Any, backend: str, overseer: Any | None = None, bare: bool = False) -> Subject:
    """saferl's envs on ``backend``; ``bare`` drops the oversight wrapper (ground truth is still computed)."""
    from saferl.oversight.envs import make_vec_env

    venv = make_vec_env(game, N_ENVS, overseer=overseer, seed=0, backend=backend)
    return sb3_subject(venv.venv if bare else venv)


def shared_workers(game: Any, workers: int) -> Subject:
    """The bare SharedMemoryVecEnv with ``workers`` worker processes."""
    from saferl.env.shared_vec_env import EnvRecipe, SharedMemoryVecEnv

    return sb3_subject(SharedMemoryVecEnv(EnvRecipe(game), N_ENVS, n_workers=workers))


def blocker_overseer(game: Any, folder: str | None) -> Any:
    """The BlockerOverseer of ``folder``, or of an untrained Blocker of the deployed shape that never blocks."""
    from saferl.blocker import BlockerOverseer

    return BlockerOverseer(load_or_untrained_blocker(game, folder))


def steps_per_second(subject: Subject, batches: int, seed: int, cpu: list[float] | None = None) -> float:
    """Env steps per second of ``batches`` random batched steps; appends the CPU microseconds per step
    (this process and its workers together) to ``cpu``."""
    actions = np.random.default_rng(seed).integers(subject.n_actions, size=(batches, N_ENVS))

    def work() -> int:
        for batch in actions:
            subject.step(batch)
        return batches * N_ENVS

    return rate(work, cpu)


def measure(game_name: str = "pong", batches: int = 250, rounds: int = 5, blocker: str | None = None,
            workers: tuple[int, ...] = (), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build every configuration, measure them side by side; the figures as a dict (and a line each to ``log``)."""
    from saferl.games import get_game
    from saferl.oversight import LookaheadOverseer, ScriptedOverseer

    game = get_game(game_name)
    builders: dict[str, Callable[[], Subject]] = {
        "cpp_vector": lambda: cpp_vector(game),
        "async_atari_wrapper": lambda: async_atari_wrapper(game),
        "subproc_bare": lambda: saferl_vec(game, "subproc", bare=True),
        "dummy_bare": lambda: saferl_vec(game, "dummy", bare=True),
        "shared_bare": lambda: saferl_vec(game, "shared", bare=True),
        **{f"shared_bare_{k}_workers": (lambda k=k: shared_workers(game, k)) for k in workers},
        "shared_none": lambda: saferl_vec(game, "shared"),
        "shared_scripted": lambda: saferl_vec(game, "shared", ScriptedOverseer(seed=0)),
        "shared_blocker": lambda: saferl_vec(game, "shared", blocker_overseer(game, blocker)),
        "dummy_lookahead": lambda: saferl_vec(game, "dummy", LookaheadOverseer()),
    }
    subjects = {name: build() for name, build in builders.items()}
    try:
        for subject in subjects.values():  # warm up: first steps touch fresh memory
            steps_per_second(subject, 10, seed=12345)
        cpu: dict[str, list[float]] = {name: [] for name in subjects}
        medians = interleaved({name: (lambda r, s=subject, c=cpu[name]: steps_per_second(s, batches, r, c))
                               for name, subject in subjects.items()}, rounds)
    finally:
        for subject in subjects.values():
            subject.close()
    result: dict[str, Any] = {"game": game.name, "n_envs": N_ENVS, "batches": batches, "rounds": rounds,
                              "blocker": blocker or "untrained, never blocks"}
    async_, cpp = medians["async_atari_wrapper"], medians["cpp_vector"]
    for name, median in medians.items():
        cpu_us = statistics.median(cpu[name])
        result[f"{name}_steps_per_second"] = round(median, 1)
        result[f"{name}_vs_async"] = ratio(median, async_)
        result[f"{name}_vs_cpp"] = ratio(median, cpp)
        result[f"{name}_cpu_us_per_step"] = round(cpu_us, 1)
        log(f"{name:<24} {median:8,.0f} steps/s   x{median / async_:.3f} of AsyncVectorEnv+AtariWrapper   "
            f"x{median / cpp:.3f} of C++ AtariVectorEnv   {cpu_us:6,.0f} CPU us/step")
    result["oversight_vec_vs_async"] = result["shared_scripted_vs_async"]
    result["oversight_vec_vs_cpp"] = result["shared_scripted_vs_cpp"]
    result["oversight_vec_vs_async_by_cpu"] = ratio(result["async_atari_wrapper_cpu_us_per_step"],
                                                    result["shared_scripted_cpu_us_per_step"])
    log(f"oversight on (shared + scripted): x{result['oversight_vec_vs_async']} of AsyncVectorEnv+AtariWrapper "
        f"(target >= 1.3; x{result['oversight_vec_vs_async_by_cpu']} by CPU per step), "
        f"x{result['oversight_vec_vs_cpp']} of the bare C++ AtariVectorEnv")
    return result


def main() -> None:
    parser = bench_parser(__doc__, rounds=5)
    parser.add_argument("--batches", type=int, default=250, help="batched steps (of 8 envs) per measurement")
    parser.add_argument("--blocker", help="a trained Blocker folder (default: an untrained one that never blocks)")
    parser.add_argument("--workers", default="", help="also measure SharedMemoryVecEnv with these worker counts (1,4)")
    args = parser.parse_args()
    workers = tuple(int(k) for k in args.workers.split(",") if k)
    print_json(measure(args.game, args.batches, args.rounds, args.blocker, workers), args.json)


if __name__ == "__main__":
    main()
