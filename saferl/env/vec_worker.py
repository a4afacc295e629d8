"""The worker side of :class:`~saferl.env.shared_vec_env.SharedMemoryVecEnv`: envs stepped in place in shared arrays.

Kept free of torch and stable-baselines3, so a worker process starts in a fraction of a second.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import cv2
import numpy as np

from saferl.env.agent_view import AGENT_SCREEN, agent_screen
from saferl.env.ground_truth import HOLD
from saferl.games import Game, GameState

SCREEN = (210, 160)
"""The ALE screen's rows and columns (the same for every Atari 2600 game)."""


@dataclass(frozen=True)
class EnvRecipe:
    """What a worker needs to build its envs (plain, picklable data).

    :param game: the game.
    :param seed: the seed of env 0; env ``i`` gets ``seed + i``, as in :func:`saferl.oversight.envs.make_vec_env`.
    :param with_frame: write RGB frames (for labels, Blockers, pixel rules).
    :param preprocess: observations are 84x84 grayscale (else RGB frames).
    :param overrides: ALE settings over the game's (see :func:`saferl.env.ale.make_ale_env`).
    """

    game: Game
    seed: int = 0
    with_frame: bool = False
    preprocess: bool = True
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """One env's observation shape."""
        return (*AGENT_SCREEN, 1) if self.preprocess else (*SCREEN, 3)

    @property
    def frames(self) -> bool:
        """Whether frames are written: asked for, or read by the game's rules."""
        return self.with_frame or self.game.needs_frame


STATE_FIELDS = ("ram", "lives", "frame_number", "frame")
"""The shared arrays that describe an env's state (``frame`` only when frames are written)."""


def fields_of(recipe: EnvRecipe, n_envs: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """The shared arrays: name -> (shape, dtype). ``reset_*`` hold the state an auto-reset led to."""
    fields: dict[str, tuple[tuple[int, ...], type]] = {
        "action": ((n_envs,), np.int64),
        "obs": ((n_envs, *recipe.obs_shape), np.uint8),
        "final": ((n_envs, *recipe.obs_shape), np.uint8),
        "reward": ((n_envs,), np.float32),
        "terminated": ((n_envs,), np.bool_),
        "truncated": ((n_envs,), np.bool_),
        "catastrophe": ((n_envs,), np.bool_),
        "probe": ((n_envs,), np.int64),  # an action to simulate before the step (negative: none)
        "probe_catastrophe": ((n_envs,), np.bool_),  # whether it held a catastrophe
    }
    for prefix in ("", "reset_"):  # the STATE_FIELDS
        fields[prefix + "ram"] = ((n_envs, 128), np.uint8)
        fields[prefix + "lives"] = ((n_envs,), np.int32)
        fields[prefix + "frame_number"] = ((n_envs,), np.int64)
        if recipe.frames:
            fields[prefix + "frame"] = ((n_envs, *SCREEN, 3), np.uint8)
    return fields


def _padded(shape: tuple[int, ...], dtype: type) -> int:
    """Bytes of an array of ``shape`` and ``dtype``, rounded up to 64 (so every array starts cache-aligned)."""
    return -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64


def nbytes(fields: dict[str, tuple[tuple[int, ...], type]]) -> int:
    """The size of the shared buffer for ``fields``."""
    return sum(_padded(shape, dtype) for shape, dtype in fields.values())


def views(buffer: Any, fields: dict[str, tuple[tuple[int, ...], type]]) -> dict[str, np.ndarray]:
    """Numpy arrays over ``buffer``, laid out as ``fields`` says."""
    arrays, offset = {}, 0
    for name, (shape, dtype) in fields.items():
        arrays[name] = np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
        offset += _padded(shape, dtype)
    return arrays


class EnvSlot:
    """One env inside a worker: the emulator, its ground truth, and its rows of the shared arrays."""

    def __init__(self, recipe: EnvRecipe, index: int, arrays: dict[str, np.ndarray]) -> None:
        from saferl.env.ale import make_ale_env

        self.recipe, self.game, self.index, self.arrays = recipe, recipe.game, index, arrays
        self.emulator = make_ale_env(recipe.game, seed=recipe.seed + index, **dict(recipe.overrides))
        self.ale = self.emulator.ale
        self.render_mode = None
        self.state = GameState.from_ale(self.ale, with_frame=self.game.needs_frame)
        self._gray = np.empty(SCREEN, dtype=np.uint8)
        self._fresh = True  # no step since the last reset

    def __getattr__(self, name: str) -> Any:  # get_attr / env_method reach the emulator's wrapper chain
        if name == "emulator":
            raise AttributeError(name)
        return self.emulator.get_wrapper_attr(name)

    def _observe(self, obs: np.ndarray) -> None:
        """Write the agent's observation of the screen (:func:`~saferl.env.agent_view.agent_screen`), or the RGB screen."""
        if self.recipe.preprocess:
            agent_screen(self.ale, self._gray, obs[:, :, 0])
        else:
            self.ale.getScreenRGB(obs)

    def _write_state(self, prefix: str) -> None:
        """Write the current state (RAM, lives, frame number, RGB frame if asked) to the ``prefix`` rows."""
        arrays, i, ale = self.arrays, self.index, self.ale
        arrays[prefix + "ram"][i] = self.state.ram
        arrays[prefix + "lives"][i] = self.state.lives
        arrays[prefix + "frame_number"][i] = ale.getEpisodeFrameNumber()
        if self.recipe.frames:
            ale.getScreenRGB(arrays[prefix + "frame"][i])

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Start an episode: the observation row and the ``reset_`` state rows."""
        self.emulator.reset(seed=seed, options=options)
        self.state = GameState.from_ale(self.ale, with_frame=self.game.needs_frame)
        self._observe(self.arrays["obs"][self.index])
        self._write_state("reset_")
        self._fresh = True

    def step(self, action: int) -> None:
        """One agent step (or a hold): its rows, and an auto-reset (``final`` keeps the last observation)."""
        arrays, i, ale = self.arrays, self.index, self.ale
        if action == HOLD:  # the env stays where it is: same observation and state, nothing happened
            arrays["reward"][i] = 0.0
            arrays["terminated"][i] = arrays["truncated"][i] = arrays["catastrophe"][i] = False
            if self._fresh:  # the state rows still hold the ended episode's last state
                for name in STATE_FIELDS:
                    if "reset_" + name in arrays:
                        arrays[name][i] = arrays["reset_" + name][i]
            return
        self._fresh = False
        arrays["reward"][i] = self.emulator.act(action)
        before, self.state = self.state, GameState.from_ale(ale, with_frame=self.game.needs_frame)
        arrays["catastrophe"][i] = self.game.is_catastrophe(before, self.state)
        terminated, truncated = self.emulator.terminated(self.state), ale.game_truncated()
        arrays["terminated"][i], arrays["truncated"][i] = terminated, truncated
        self._write_state("")
        self._observe(arrays["obs"][i])
        if terminated or truncated:
            arrays["final"][i] = arrays["obs"][i]
            self.reset()

    def would_be_catastrophe(self, action: int) -> bool:
        """Would executing ``action`` now hold a catastrophe? (exact; the env is left as it was)"""
        return self.emulator.first_catastrophe(self.game, int(action)) is not None

    def render(self) -> np.ndarray:
        """The RGB screen."""
        return self.ale.getScreenRGB()


class EnvBlock:
    """The envs one process steps (a worker's, or the parent's own share), answering the parent's commands.

    :param recipe: the game and env settings.
    :param indices: which envs of the vector (their rows in the shared arrays).
    :param arrays: the shared arrays (see :func:`views`).
    """

    def __init__(self, recipe: EnvRecipe, indices: list[int], arrays: dict[str, np.ndarray]) -> None:
        self.slots = {i: EnvSlot(recipe, i, arrays) for i in indices}
        self.arrays = arrays
        self.actions, self.probes, self.probed = arrays["action"], arrays["probe"], arrays["probe_catastrophe"]
        self.scorer: Callable[[list[np.ndarray]], Any] | None = None

    def score(self, fresh: Collection[int]) -> Any:
        """The scorer's answer on every env's RGB frame (of all the vector's envs, not only this block's): the
        frame each env's next step starts from, the ``reset_`` row for the envs in ``fresh`` (just reset)."""
        if self.scorer is None:
            raise RuntimeError("no scorer: set one first (SharedMemoryVecEnv.set_scorer)")
        if "frame" not in self.arrays:
            raise RuntimeError("the scorer reads RGB frames: build the envs with with_frame=True")
        frames, reset_frames = self.arrays["frame"], self.arrays["reset_frame"]
        return self.scorer([reset_frames[i] if i in fresh else frames[i] for i in range(len(frames))])

    def handle(self, command: str, data: Any) -> Any:
        """Run ``command`` (``step``, ``reset``, ``call``, ``get``, ``set``, ``set_scorer``, ``score``, ``close``)
        on the envs; its answer (a ``step``'s data, whether to score after it, is :func:`run_worker`'s)."""
        if command == "score":
            return self.score(frozenset(data))
        if command == "set_scorer":
            self.scorer = data
            return None
        if command == "step":
            for i, slot in self.slots.items():
                if self.probes[i] >= 0:  # the counterfactual of an overridden action, before the real step
                    self.probed[i] = slot.would_be_catastrophe(int(self.probes[i]))
                slot.step(int(self.actions[i]))
            return None
        if command == "reset":
            seeds, options = data
            for i, slot in self.slots.items():
                slot.reset(seed=seeds[i], options=options[i] or None)
            return None
        if command == "call":
            targets, name, args, kwargs = data
            return [getattr(self.slots[i], name)(*args, **kwargs) for i in targets]
        if command == "get":
            targets, name = data
            return [getattr(self.slots[i], name) for i in targets]
        if command == "set":
            targets, name, value = data
            return [setattr(self.slots[i], name, value) for i in targets]
        if command == "close":
            for slot in self.slots.values():
                slot.emulator.close()
            return None
        raise ValueError(f"unknown command {command!r}")


def reset_after_step(arrays: dict[str, np.ndarray]) -> tuple[int, ...]:
    """After a step of every env: the envs that ended an episode and were reset, whose next step starts from their
    ``reset_`` rows (what the parent and worker 0's scorer both read)."""
    return tuple(np.flatnonzero(arrays["terminated"] | arrays["truncated"]).tolist())


def _answer(conn: Connection, work: Callable[..., Any], *args: Any) -> None:
    """Send ``("ok", work(*args))``, or ``("error", traceback)`` when it raises."""
    try:
        conn.send(("ok", work(*args)))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc()))


def _frames_ready(conn: Connection, ready: Any) -> bool:
    """Wait until the parent says every env's new frame is written (``ready`` released); False if the parent has
    gone (its end of the pipe closed) meanwhile."""
    while not ready.acquire(timeout=1.0):
        if conn.poll():  # the parent sends nothing else before it releases ``ready``: it has gone
            return False
    return True


def run_worker(conn: Connection, buffer: Any, recipe: EnvRecipe, n_envs: int, indices: list[int],
               ready: Any) -> None:
    """A worker process's loop: build its envs, then answer commands with ``("ok", answer)`` or
    ``("error", traceback)`` until ``close``.

    A ``step`` command whose data is True also scores: once this block has stepped and answered, the worker waits
    for ``ready`` (a semaphore the parent releases when every block has stepped), runs the scorer on every env's new
    frame and sends its answer as a second reply, while the parent goes on with the step's results."""
    cv2.setNumThreads(1)  # a worker per core: resize threads would only fight the other workers
    try:
        block = EnvBlock(recipe, indices, views(buffer, fields_of(recipe, n_envs)))
        conn.send(("ok", None))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            command, data = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        _answer(conn, block.handle, command, data)
        if command == "close":
            return
        if command == "step" and data is True:
            if not _frames_ready(conn, ready):
                return
            _answer(conn, lambda: block.score(frozenset(reset_after_step(block.arrays))))
