"""Building envs: the raw ALE env of a game, and the agent's preprocessing on top of it."""

from __future__ import annotations

from typing import Any

import ale_py
import gymnasium as gym

from saferl.emulator import Emulator
from saferl.errors import SaferlError
from saferl.games import Game

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr: saferl's own messages only


def make_ale_env(game: Game, seed: int | None = None, **overrides: Any) -> Emulator:
    """The game's ALE env with its settings (frameskip 4, sticky actions 0.25, minimal actions).

    Observations are RGB frames (210x160x3). ``overrides`` replace the game's ``env_kwargs``
    (for example ``repeat_action_probability=0.0``). Frameskip and sticky actions are applied by
    :class:`~saferl.emulator.Emulator`, so that look-ahead can replay them exactly; episodes end where
    the game says (:meth:`~saferl.games.Game.episode_over`) as well as at ALE's game over.
    """
    kwargs = {**game.env_kwargs, **overrides}
    frameskip = kwargs.pop("frameskip", 4)
    sticky = kwargs.pop("repeat_action_probability", 0.25)
    atari = gym.make(game.env_id, frameskip=1, repeat_action_probability=0.0, obs_type="rgb", **kwargs)
    env = Emulator(atari, frameskip=frameskip, repeat_action_probability=sticky, game=game)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def action_names(env: gym.Env) -> list[str]:
    """The meanings of the env's actions, as ALE names them (``NOOP``, ``FIRE``, ...)."""
    return list(env.unwrapped.get_action_meanings())


def game_action_names(game: Game) -> list[str]:
    """The meanings of ``game``'s actions, read from a probe env that is closed at once."""
    probe = make_ale_env(game)
    try:
        return action_names(probe)
    finally:
        probe.close()


def needs_frames(overseer: Any | None, label_store: Any | None, with_frame: bool = False) -> bool:
    """Whether envs must snapshot RGB frames: asked for, stored as labels, or read by the overseer."""
    return with_frame or label_store is not None or "frame" in getattr(overseer, "requires", ())


BACKENDS = ("dummy", "subproc", "shared")


def choose_backend(n_envs: int, overseer: Any | None, backend: str | None = None) -> str:
    """The vec env backend for ``make_vec_env`` (None: the default; see there); a clear error for a bad name."""
    if backend is None:
        simulates = "emulator" in getattr(overseer, "requires", ())
        return "shared" if n_envs > 1 and not simulates else "dummy"
    if backend not in BACKENDS:
        raise SaferlError(f"unknown vec env backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


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
    from saferl.oversight import GroundTruthWrapper, OversightWrapper

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
    **overrides: Any,
) -> gym.Env:
    """One overseen env as an agent sees it: the last ``frame_stack`` 84x84 grayscale frames (``frame_stack x 84 x 84``
    uint8), over :func:`make_overseen_env` (so ``info`` carries the oversight keys)."""
    from saferl.oversight.ground_truth import KeepObservationOnHold

    env = make_overseen_env(game, overseer, mode, penalty, label_store, seed, first_episode=first_episode, **overrides)
    env = KeepObservationOnHold(gym.wrappers.AtariPreprocessing(env, noop_max=0, frame_skip=1, screen_size=84))
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
    subprocess: bool = False,
    preprocess: bool = True,
    first_episode: int = 0,
    backend: str | None = None,
    **overrides: Any,
) -> Any:
    """``n_envs`` overseen envs of ``game`` as an SB3 VecEnv: ground truth in each env, one batched review.

    With ``preprocess`` the agent sees 84x84 grayscale frames (ALE's own grayscale screen); stack
    them with SB3's ``VecFrameStack``. ``backend`` says where the envs run: ``dummy`` (this process,
    SB3's DummyVecEnv: what overseers that simulate the envs, such as look-ahead, need), ``subproc``
    (SB3's SubprocVecEnv, a process per env) or ``shared`` (:class:`~saferl.shared_vec_env.SharedMemoryVecEnv`,
    a worker per core over shared memory). None picks ``shared`` for more than one env when the
    overseer does not simulate them, else ``dummy``: in 6 runs of ``python bench/env_speed.py``, 8 Pong
    envs on 2 cores busy with other work stepped 1.06-1.32x as fast on ``shared`` as on ``dummy`` and
    1.04-1.66x as fast as on ``subproc``, with less CPU per step than either (``dummy`` steps every
    env on one core, ``shared`` on all of them). ``subprocess=True`` is ``backend="subproc"``.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from saferl.oversight import GroundTruthWrapper
    from saferl.oversight.ground_truth import KeepObservationOnHold
    from saferl.oversight.vec_wrapper import VecOversight
    from saferl.shared_vec_env import EnvRecipe, SharedMemoryVecEnv

    needs_frame = needs_frames(overseer, label_store, with_frame)
    backend = choose_backend(n_envs, overseer, backend or ("subproc" if subprocess else None))

    def build(rank: int) -> Any:
        def thunk() -> gym.Env:
            env: gym.Env = GroundTruthWrapper(make_ale_env(game, seed=seed + rank, **overrides), game, with_frame=needs_frame)
            if preprocess:
                env = KeepObservationOnHold(gym.wrappers.AtariPreprocessing(
                    env, noop_max=0, frame_skip=1, screen_size=84, grayscale_newaxis=True))
            return env

        return thunk

    if backend == "shared":
        venv = SharedMemoryVecEnv(EnvRecipe(game, seed, needs_frame, preprocess, tuple(overrides.items())), n_envs)
    else:
        venv = (SubprocVecEnv if backend == "subproc" else DummyVecEnv)([build(rank) for rank in range(n_envs)])
    venv.seed(seed)
    try:
        return VecOversight(venv, game, overseer, mode=mode, penalty=penalty, label_store=label_store,
                            first_episode=first_episode)
    except BaseException:
        venv.close()  # no worker processes left behind by a refused overseer
        raise
