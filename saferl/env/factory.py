"""Vectors of a game's envs with ground truth, on a chosen backend (in this process, a process per env, or a
worker per core over shared memory)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from saferl.env.ale import make_ale_env
from saferl.errors import SaferlError
from saferl.games import Game


def needs_frames(overseer: Any | None, label_store: Any | None, with_frame: bool = False) -> bool:
    """Whether envs must snapshot RGB frames: asked for, stored as labels, or read by the overseer."""
    return with_frame or label_store is not None or (overseer is not None and "frame" in overseer.requires)


BACKENDS = ("dummy", "subproc", "shared")


def choose_backend(n_envs: int, overseer: Any | None, backend: str | None = None) -> str:
    """The vec env backend for :func:`make_raw_vec_env` (None: ``shared`` for more than one env unless the overseer
    simulates the envs, else ``dummy``); a clear error for a bad name."""
    if backend is None:
        simulates = overseer is not None and "emulator" in overseer.requires
        return "shared" if n_envs > 1 and not simulates else "dummy"
    if backend not in BACKENDS:
        raise SaferlError(f"unknown vec env backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def make_raw_vec_env(game: Game, n_envs: int, seed: int, with_frame: bool, preprocess: bool, backend: str,
                     **overrides: Any) -> Any:
    """``n_envs`` envs of ``game`` with ground truth, as an SB3 VecEnv on ``backend`` (see :data:`BACKENDS`), seeded
    ``seed``, ``seed + 1``, ...; with ``preprocess`` they show the agent's 84x84 gray view
    (:mod:`saferl.env.agent_view`), and with ``with_frame`` each step's RGB frame rides in ``info``."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from saferl.env.agent_view import AgentView
    from saferl.env.ground_truth import GroundTruthWrapper
    from saferl.env.shared_vec_env import EnvRecipe, SharedMemoryVecEnv

    def build(rank: int) -> Any:
        def thunk() -> gym.Env:
            env: gym.Env = GroundTruthWrapper(make_ale_env(game, seed=seed + rank, **overrides), game,
                                              with_frame=with_frame)
            return AgentView(env, channel_axis=True) if preprocess else env

        return thunk

    if backend == "shared":
        venv = SharedMemoryVecEnv(EnvRecipe(game, seed, with_frame, preprocess, tuple(overrides.items())), n_envs)
    else:
        venv = (SubprocVecEnv if backend == "subproc" else DummyVecEnv)([build(rank) for rank in range(n_envs)])
    venv.seed(seed)
    return venv
