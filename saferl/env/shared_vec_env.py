"""SharedMemoryVecEnv: a few processes step many envs each and write the results into shared memory.

SB3's SubprocVecEnv runs one process per env and pickles every observation and info through a pipe.
Here each worker process (one per core, less the one the calling process steps on while it would
otherwise wait) steps a contiguous block of envs and writes the agent's observations, rewards, end
flags, ground truth (RAM, lives, catastrophe) and, only when asked, RGB frames into numpy arrays
over one shared buffer; the pipe carries a one-word command per step.
Workers keep per-step Python work lean: :meth:`~saferl.env.emulator.Emulator.act` (the replayable
frameskip and sticky actions, so results equal the in-process envs'), the agent's view of the screen
(:func:`~saferl.env.agent_view.agent_screen`), no RGB copy unless frames are needed, and the
game's ground truth computed where the env runs.

The envs are the same as :func:`saferl.oversight.envs.make_vec_env` builds with ``backend="dummy"``
(``GroundTruthWrapper`` + ``AgentView``): same observations, rewards, infos
(``game_state``, ``catastrophe``, ``lives``, ``episode_frame_number``, ``terminal_observation``),
``reset_infos`` and :data:`~saferl.env.ground_truth.HOLD` steps; ``env_method`` runs in the
worker. The oversight's counterfactuals (would the overridden action have held a catastrophe?) ride
on the step itself (``step_async(actions, probes)``): no extra round trip. The emulators live in the
workers, so overseers that simulate the envs (look-ahead) need the in-process backend.

What an overseer computes from the frames alone (the Blocker's scores of every action) can run in
worker 0 (:meth:`SharedMemoryVecEnv.set_scorer`): after a step it scores all envs' new frames from the
shared arrays while the agent chooses its next actions, so neither the frames' preprocessing nor the
CNN sits in the learner's process. A step can carry the request (``step_async(..., score=True)``): worker 0
starts scoring as soon as every block has stepped, released by a semaphore instead of a command.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from saferl.env.vec_worker import EnvBlock, EnvRecipe, fields_of, nbytes, reset_after_step, run_worker, views
from saferl.games import GameState

LOCAL = -1
"""The owner of the envs this process steps itself."""


def forkserver_preload() -> list[str]:
    """What the forkserver should import before it forks workers: the worker module, and the heavy modules
    this program has imported. CPython 3.11's forkserver drops its ``__main__`` preload (it asks for
    ``main_path``; the preparation data calls it ``init_main_from_path``), so every worker runs the main
    module again; with torch and SB3 already in the server that re-run takes milliseconds, not seconds.
    """
    return ["saferl.env.vec_worker", *(name for name in ("torch", "stable_baselines3") if name in sys.modules)]


def available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class SharedMemoryVecEnv(VecEnv):
    """``n_envs`` saferl envs of one game stepped by worker processes over shared memory (see the module).

    The envs are split into contiguous blocks, one per worker and, with ``in_process``, one this
    process steps itself while the workers step theirs (it would only wait for them otherwise).

    :param recipe: the game and env settings.
    :param n_envs: how many envs.
    :param n_workers: worker processes (None: one per CPU, less the one this process steps on).
    :param in_process: step a block of envs in this process too. With two worker processes instead
        of one and this block, an A2C learner overseen by a Blocker scored in worker 0 (:meth:`set_scorer`) ran at
        0.90 of its unoverseen speed acting, against 0.83 (``python bench/training_fps.py --algorithms a2c --scale
        4`` on 2 cores): a second worker woken by the step command took the learner's core from it.
    :param start_method: multiprocessing start method (``forkserver`` as SB3's SubprocVecEnv: scripts need
        an ``if __name__ == "__main__":`` guard).
    """

    def __init__(self, recipe: EnvRecipe, n_envs: int, n_workers: int | None = None, in_process: bool = True,
                 start_method: str = "forkserver") -> None:
        if n_workers is None:
            n_workers = available_cpus() - int(in_process)
        n_workers = max(0, min(n_workers, n_envs - int(in_process)))
        if n_workers == 0 and not in_process:
            raise ValueError("SharedMemoryVecEnv needs a worker process or in_process=True")
        self.recipe = recipe
        fields = fields_of(recipe, n_envs)
        context = mp.get_context(start_method)
        if start_method == "forkserver":
            context.set_forkserver_preload(forkserver_preload())
        self._buffer = context.RawArray("b", nbytes(fields))
        self._arrays = views(self._buffer, fields)
        blocks = [[int(i) for i in block] for block in np.array_split(np.arange(n_envs), n_workers + int(in_process))]
        local = blocks.pop(0) if in_process else []
        self._owner = {i: LOCAL for i in local} | {i: w for w, block in enumerate(blocks) for i in block}
        self._conns: list[Connection] = []
        self._processes: list[Any] = []
        self._local: EnvBlock | None = None
        self.closed = False
        self.waiting = False
        self._fresh: tuple[int, ...] = tuple(range(n_envs))  # envs whose next step starts from their reset_ rows
        self.frames_in_infos = True  # copy the RGB frames into the infos' game states (see :meth:`current_frames`)
        self._scoring = False  # worker 0 owes the answer of a score command
        self._score_on_step = False  # the step in flight asked worker 0 to score after it
        self._frames_ready = context.Semaphore(0)  # released when every block has stepped: worker 0 may score
        self._score: tuple[Any] | None = None  # that answer, once received
        try:
            for block in blocks:
                parent, child = context.Pipe()
                process = context.Process(target=run_worker, daemon=True,
                                          args=(child, self._buffer, recipe, n_envs, block, self._frames_ready))
                process.start()
                child.close()
                self._conns.append(parent)
                self._processes.append(process)
            if local:
                self._local = EnvBlock(recipe, local, self._arrays)
            self._gather(range(n_workers))
        except BaseException:
            self.close()
            raise
        action_space = self._ask("get", [0], "action_space")[0]
        super().__init__(n_envs, gym.spaces.Box(0, 255, recipe.obs_shape, np.uint8), action_space)

    # --- talking to workers -----------------------------------------------------------------------
    def _gather(self, workers: Sequence[int] | range) -> list[Any]:
        """Each worker's answer, in order; the first worker error is raised once all have answered."""
        answers, errors = [], []
        for w in workers:
            try:
                status, result = self._conns[w].recv()
            except EOFError:
                status, result = "error", (f"it died (exit code {self._processes[w].exitcode}). Workers start by "
                                           "re-importing the main module: a script must guard its entry point "
                                           "with if __name__ == '__main__':")
            if status == "error":
                errors.append(f"SharedMemoryVecEnv worker {w} failed:\n{result}")
            answers.append(result)
        if errors:
            raise RuntimeError(errors[0])
        return answers

    def _run(self, command: str, data: Any) -> None:
        """Run ``command`` on every env: the workers' blocks and this process's."""
        self._finish_scoring()
        for conn in self._conns:
            conn.send((command, data))
        if self._local is not None:
            self._local.handle(command, data)
        self._gather(range(len(self._conns)))

    def _ask(self, command: str, indices: VecEnvIndices, *data: Any) -> list[Any]:
        """Run ``command`` on the envs ``indices`` where they live; the answers in the order of ``indices``."""
        groups: dict[int, list[int]] = {}
        for i in self._get_indices(indices):
            groups.setdefault(self._owner[int(i)], []).append(int(i))
        remote = [w for w in groups if w != LOCAL]
        self._finish_scoring()
        for w in remote:
            self._conns[w].send((command, (groups[w], *data)))
        answers: dict[int, Any] = {}
        if LOCAL in groups:
            answers.update(zip(groups[LOCAL], self._local.handle(command, (groups[LOCAL], *data))))
        for w, results in zip(remote, self._gather(remote)):
            answers.update(zip(groups[w], results))
        return [answers[int(i)] for i in self._get_indices(indices)]

    # --- the VecEnv API -----------------------------------------------------------------------------
    def _infos(self, prefix: str) -> list[dict[str, Any]]:
        """The ground-truth part of each env's info, from the shared arrays (copied: the next step overwrites them)."""
        arrays = self._arrays
        ram = arrays[prefix + "ram"].copy()
        frames = arrays[prefix + "frame"].copy() if self.recipe.frames and self.frames_in_infos else None
        frame_numbers = arrays[prefix + "frame_number"].tolist()
        lives = arrays[prefix + "lives"].tolist()
        return [{"lives": lives[i], "episode_frame_number": frame_numbers[i],
                 "game_state": GameState(ram=ram[i], lives=lives[i], frame=None if frames is None else frames[i])}
                for i in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        seeds = dict(enumerate(self._seeds))
        options = dict(enumerate(self._options))
        self._run("reset", (seeds, options))
        self._fresh = tuple(range(self.num_envs))
        self.reset_infos = [{**info, "catastrophe": False} for info in self._infos("reset_")]
        self._reset_seeds()
        self._reset_options()
        return self._arrays["obs"].copy()

    def step_async(self, actions: np.ndarray, probes: np.ndarray | None = None, score: bool = False) -> None:
        """Step every env; ``probes`` (one per env, negative for none) are actions each env simulates on a
        snapshot first, in the same round trip (:meth:`probed_catastrophes` then says what they held). With
        ``score``, worker 0 runs the scorer (:meth:`set_scorer`) on the new frames once every env has stepped, as
        :meth:`score_async` would after the step, and :meth:`score_wait` returns its answer."""
        self._finish_scoring()
        if score and not self._conns:
            raise ValueError("SharedMemoryVecEnv runs a scorer in a worker process: this one has none (n_workers=0)")
        self._arrays["action"][:] = np.asarray(actions).reshape(self.num_envs)
        self._arrays["probe"][:] = -1 if probes is None else np.asarray(probes).reshape(self.num_envs)
        for w, conn in enumerate(self._conns):
            conn.send(("step", score and w == 0))
        self._score = None
        self._score_on_step = score
        self.waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        if self._local is not None:  # this process's block, while the workers step theirs
            self._local.handle("step", None)
        try:
            self._gather(range(len(self._conns)))
        finally:  # every worker has answered, even when one failed: none owes a step, and worker 0 may score
            self.waiting = False
            self._release_scorer()
        arrays = self._arrays
        terminated, truncated = arrays["terminated"].copy(), arrays["truncated"].copy()
        dones = terminated | truncated
        self._fresh = reset_after_step(arrays)
        catastrophes = arrays["catastrophe"].tolist()
        infos = self._infos("")
        if dones.any():
            resets = self._infos("reset_")
        for i, info in enumerate(infos):
            info["catastrophe"] = catastrophes[i]
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i]:
                info["terminal_observation"] = arrays["final"][i].copy()
                self.reset_infos[i] = {**resets[i], "catastrophe": False}
        return arrays["obs"].copy(), arrays["reward"].copy(), dones, infos

    def probed_catastrophes(self) -> np.ndarray:
        """After a step with ``probes``: whether each env's probed action would have held a catastrophe."""
        return self._arrays["probe_catastrophe"].copy()

    def current_frames(self) -> list[np.ndarray]:
        """A copy of the RGB frame each env's next step starts from (after an episode's end, its next episode's
        first frame): what the infos' game states carry unless ``frames_in_infos`` is False, which saves the copy
        of every frame on every step when nothing in this process reads them (a scorer in worker 0 reviews them).

        :raises ValueError: when the envs were built without frames.
        """
        if not self.recipe.frames:
            raise ValueError("the envs were built without RGB frames: build them with with_frame=True")
        fresh, arrays = frozenset(self._fresh), self._arrays
        return [(arrays["reset_frame"] if i in fresh else arrays["frame"])[i].copy() for i in range(self.num_envs)]

    # --- scoring where the frames are -----------------------------------------------------------
    def set_scorer(self, scorer: Callable[[list[np.ndarray]], Any] | None) -> None:
        """Have worker process 0 run ``scorer`` (None: none) on the RGB frames of all envs at each :meth:`score_async`.

        :raises ValueError: without a worker process or frames, or when ``scorer`` cannot be pickled.
        """
        if not self._conns:
            raise ValueError("SharedMemoryVecEnv runs a scorer in a worker process: this one has none (n_workers=0)")
        if not self.recipe.frames:
            raise ValueError("a scorer reads RGB frames: build the envs with with_frame=True")
        try:
            message = ForkingPickler.dumps(("set_scorer", scorer))
        except (pickle.PicklingError, AttributeError, TypeError) as err:  # what pickling raises on a local object
            raise ValueError(f"the scorer cannot be sent to a worker process: {err}") from None
        self._finish_scoring()
        self._score = None
        self._conns[0].send_bytes(message)
        self._gather([0])

    def score_async(self) -> None:
        """Start the scorer (:meth:`set_scorer`) in worker 0 on the RGB frame each env's next step starts from (after
        an episode's end, its next episode's first frame), and return: the agent chooses its actions meanwhile,
        and the worker, which has stepped its envs, would idle. :meth:`score_wait` returns the answer."""
        self._finish_scoring()
        self._score = None
        self._conns[0].send(("score", self._fresh))
        self._scoring = True

    def score_wait(self) -> Any:
        """The scorer's answer to the last :meth:`score_async` (waiting for it)."""
        self._finish_scoring()
        if self._score is None:
            raise RuntimeError("score_wait() without score_async()")
        (answer,), self._score = self._score, None
        return answer

    @property
    def scoring(self) -> bool:
        """Whether worker 0 is scoring (or has scored) frames whose answer :meth:`score_wait` has not returned."""
        return self._scoring or self._score is not None

    def _release_scorer(self) -> None:
        """Tell worker 0 that every env has stepped, when the step asked it to score: it scores from now on."""
        if self._score_on_step:
            self._score_on_step = False
            self._frames_ready.release()
            self._scoring = True

    def _finish_scoring(self) -> None:
        """Receive worker 0's answer to an outstanding score command (kept for :meth:`score_wait`): before anything
        else is sent to it, so answers never cross."""
        if self._scoring:
            self._scoring = False
            self._score = (self._gather([0])[0],)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in self._conns:
            try:
                if self.waiting:
                    conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
        self.waiting = False
        try:
            self._release_scorer()
            self._finish_scoring()
        except RuntimeError:  # a dead or failed worker: closed below all the same
            pass
        for conn, process in zip(self._conns, self._processes):
            try:
                if process.is_alive():
                    conn.send(("close", None))
                    conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                pass
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
        for conn in self._conns:
            conn.close()
        if self._local is not None:
            self._local.handle("close", None)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._ask("get", indices, attr_name)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._ask("set", indices, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        return self._ask("call", indices, method_name, method_args, method_kwargs)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return self.env_method("render")

    @property
    def worker_pids(self) -> list[int]:
        """The worker processes' ids."""
        return [int(process.pid) for process in self._processes]
