"""Overseen envs: the game's envs (:mod:`saferl.env.factory`) with an overseer reviewing every step, one env or a
batch of them."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from saferl.env.agent_view import AgentView
from saferl.env.ale import make_ale_env
from saferl.env.factory import choose_backend, make_raw_vec_env, needs_frames
from saferl.env.ground_truth import GroundTruthWrapper
from saferl.games import Game


def make_overseen_env(
    game: Game,
    overseer: Any | None = None,
    mode: str = "replace",
    penalty: float = -1.0,
    label_store: Any | None = None,
    seed: int | None = None,
    with_frame: bool = False,
    first_episode: int = 0,
    **overrides: Any,
) -> gym.Env:
    """The game's ALE env with ground truth and oversight: ``OversightWrapper(GroundTruthWrapper(ale))``.

    Frames are snapshotted when the label store, the overseer or the game needs them.
    """
    from saferl.oversight.wrapper import OversightWrapper

    needs_frame = needs_frames(overseer, label_store, with_frame)
    env = GroundTruthWrapper(make_ale_env(game, seed=seed, **overrides), game, with_frame=needs_frame)
    return OversightWrapper(env, overseer, mode=mode, penalty=penalty, label_store=label_store, first_episode=first_episode)


def make_agent_env(
    game: Game,
    overseer: Any | None = None,
    mode: str = "replace",
    penalty: float = -1.0,
    label_store: Any | None = None,
    seed: int | None = None,
    frame_stack: int = 4,
    first_episode: int = 0,
    with_frame: bool = False,
    **overrides: Any,
) -> gym.Env:
    """One overseen env as an agent sees it: the last ``frame_stack`` 84x84 grayscale frames (``frame_stack x 84 x 84``
    uint8), over :func:`make_overseen_env` (so ``info`` carries the oversight keys; with ``with_frame`` its
    ``game_state`` carries the RGB frame)."""
    env = make_overseen_env(game, overseer, mode, penalty, label_store, seed, with_frame=with_frame,
                            first_episode=first_episode, **overrides)
    env = AgentView(env)
    return gym.wrappers.FrameStackObservation(env, frame_stack)


def make_vec_env(
    game: Game,
    n_envs: int = 8,
    overseer: Any | None = None,
    mode: str = "replace",
    penalty: float = -1.0,
    label_store: Any | None = None,
    seed: int = 0,
    with_frame: bool = False,
    preprocess: bool = True,
    first_episode: int = 0,
    backend: str | None = None,
    **overrides: Any,
) -> Any:
    """``n_envs`` overseen envs of ``game`` as an SB3 VecEnv: ground truth in each env, one batched review.

    With ``preprocess`` the agent sees 84x84 grayscale frames (ALE's own grayscale screen); stack
    them with SB3's ``VecFrameStack``. ``backend`` says where the envs run: ``dummy`` (this process,
    SB3's DummyVecEnv: what overseers that simulate the envs, such as look-ahead, need), ``subproc``
    (SB3's SubprocVecEnv, a process per env) or ``shared`` (:class:`~saferl.env.shared_vec_env.SharedMemoryVecEnv`,
    a worker per core over shared memory). None picks ``shared`` for more than one env when the
    overseer does not simulate them, else ``dummy``: in 6 runs of ``python bench/env_speed.py``, 8 Pong
    envs on 2 cores busy with other work stepped 1.06-1.32x as fast on ``shared`` as on ``dummy`` and
    1.04-1.66x as fast as on ``subproc``, with less CPU per step than either (``dummy`` steps every
    env on one core, ``shared`` on all of them).
    """
    from saferl.oversight.vec_wrapper import VecOversight

    needs_frame = needs_frames(overseer, label_store, with_frame)
    backend = choose_backend(n_envs, overseer, backend)
    venv = make_raw_vec_env(game, n_envs, seed, needs_frame, preprocess, backend, **overrides)
    try:
        return VecOversight(venv, game, overseer, mode=mode, penalty=penalty, label_store=label_store,
                            first_episode=first_episode)
    except BaseException:
        venv.close()  # no worker processes left behind by a refused overseer
        raise
