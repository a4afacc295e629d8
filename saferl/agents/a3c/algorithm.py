"""The A3C algorithm: one shared model and optimizer, ``n_workers`` processes that learn on them, and the main
process that supervises them, logs and predicts.

* one :class:`~saferl.agents.a3c.network.ActorCritic` lives in shared CPU memory, with one
  :class:`~saferl.agents.a3c.optimizer.SharedAdam` whose moment estimates also live in shared memory;
* ``n_workers`` processes (``spawn``) run :func:`~saferl.agents.a3c.worker.worker_process`, each with its own env;
* each worker reports, once per rollout, the oversight outcome of each step and the finished episodes
  through a queue; the main process feeds them into :class:`~saferl.oversight.metrics.SafetyCounters`,
  TensorBoard and the progress bar.

Episodes: a worker's episode ends at ``terminated`` or ``truncated`` (the env is reset then). The episode
each worker is in when :meth:`A3C.learn` ends is closed as well (its env is closed, as
``OversightWrapper.close`` does), so the episode rows always add up to the totals.
"""

from __future__ import annotations

import os
import queue as queue_lib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp

from saferl.agents.a3c.config import A3CConfig
from saferl.agents.a3c.io import checkpoint_paths, read_a3c, restore_tensors, save_a3c
from saferl.agents.a3c.network import ActorCritic
from saferl.agents.a3c.optimizer import SharedAdam
from saferl.agents.a3c.processes import check_picklable, sigint_ignored, stop_workers
from saferl.agents.a3c.worker import EnvFactory, worker_process
from saferl.device import resolve_device
from saferl.errors import SaferlError
from saferl.oversight.metrics import TALLIED, SafetyCounters

LOG_EVERY_STEPS = 2_000
DEAD_WORKER_GRACE_S = 5.0


class A3C:
    """Asynchronous advantage actor-critic over ``n_workers`` processes sharing one model and one optimizer.

    :param env_factory: ``env_factory(rank)`` builds worker ``rank``'s env *inside the worker process*
        (start method ``spawn``), so it must be picklable: a module-level function, a ``functools.partial``
        of one, or a dataclass instance with ``__call__(rank)``. Each env is one gymnasium env with uint8
        observations (e.g. ``4 x 84 x 84`` from :func:`saferl.oversight.envs.make_agent_env`), a Discrete action space
        and the oversight keys in ``info``. The main process builds ``env_factory(0)`` once here to read the
        spaces.
    :param config: hyperparameters (:class:`A3CConfig`).
    :param log_dir: TensorBoard folder (None: no logging).

    ``num_timesteps`` counts the env steps of all workers across :meth:`learn` calls, and ``counters`` (a
    :class:`~saferl.oversight.metrics.SafetyCounters`, env_index = worker rank) their safety outcomes.
    A script that trains must guard its entry point with ``if __name__ == "__main__":`` (spawn re-imports it).
    """

    def __init__(self, env_factory: EnvFactory, config: A3CConfig = A3CConfig(),  # noqa: B008 - frozen
                 log_dir: str | os.PathLike[str] | None = None) -> None:
        obs_shape, n_actions = self._read_spaces(env_factory)
        self._setup(config, obs_shape, n_actions, env_factory, log_dir)

    @staticmethod
    def _read_spaces(env_factory: EnvFactory) -> tuple[tuple[int, ...], int]:
        env = env_factory(0)
        try:
            if not isinstance(env.action_space, gym.spaces.Discrete):
                raise SaferlError(f"A3C needs a Discrete action space, not {env.action_space}")
            shape = tuple(int(d) for d in env.observation_space.shape or ())
            if len(shape) != 3:
                raise SaferlError(f"A3C needs image observations (C, H, W), not shape {shape}: build the env "
                                  "with saferl.oversight.envs.make_agent_env")
            return shape, int(env.action_space.n)
        finally:
            env.close()

    def _setup(self, config: A3CConfig, obs_shape: tuple[int, ...], n_actions: int,
               env_factory: EnvFactory | None, log_dir: str | os.PathLike[str] | None) -> None:
        self.config = config
        self.env_factory = env_factory
        self.log_dir = None if log_dir is None else str(log_dir)
        self.device = resolve_device(config.device)
        self.num_timesteps = 0
        self.counters = SafetyCounters()
        with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.model = ActorCritic(obs_shape, n_actions, lstm=config.lstm)
        self.model.share_memory()
        self.optimizer = SharedAdam(self.model.parameters(), lr=config.learning_rate)
        self._inference_model: ActorCritic | None = None

    # ---- training ----------------------------------------------------------------------------------

    def learn(self, total_timesteps: int, env_factory: EnvFactory | None = None, progress_bar: bool = False,
              on_episode: Callable[[dict], None] | None = None) -> A3C:
        """Train until the workers together have taken ``total_timesteps`` more env steps.

        Continues the same model, optimizer state, ``num_timesteps`` and ``counters`` on every call.

        :param env_factory: the workers' env factory for this call (None: the last one given).
        :param progress_bar: show a tqdm bar over the steps of this call.
        :param on_episode: called in the main process with each episode row of ``counters``. Episodes still
            running when the budget is spent are closed too (their env is closed), like
            :meth:`OversightWrapper.close` does, so the rows' steps add up to ``counters.totals["steps"]``.
        :raises RuntimeError: a worker failed (the message holds its traceback); the others are terminated.
        :raises SaferlError: bad arguments, or a worker's env does not fit the model.
        """
        if total_timesteps < 0:
            raise SaferlError(f"total_timesteps must be >= 0, not {total_timesteps}")
        if env_factory is not None:
            self.env_factory = env_factory
        if self.env_factory is None:
            raise SaferlError("A3C.learn needs an env_factory: pass one (env_factory(rank) -> gym.Env)")
        check_picklable(self.env_factory)
        if total_timesteps == 0:
            return self

        ctx = mp.get_context("spawn")
        target = self.num_timesteps + int(total_timesteps)
        counter = ctx.Value("q", self.num_timesteps)
        messages = ctx.Queue()
        stop = ctx.Event()
        # each worker's sampling seed depends on the config's seed, its rank and where training stands
        seeds = np.random.SeedSequence([self.config.seed, self.num_timesteps]).generate_state(self.config.n_workers)
        workers = [
            ctx.Process(
                target=worker_process, name=f"a3c-worker-{rank}", daemon=True,
                args=(rank, int(seeds[rank]), self.config, self.env_factory, self.model, self.optimizer, counter,
                      target, messages, stop),
            )
            for rank in range(self.config.n_workers)
        ]
        writer = None
        if self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(self.log_dir)
        from tqdm import tqdm

        bar = tqdm(total=int(total_timesteps), disable=not progress_bar, unit="step", desc="A3C")
        self._inference_model = None
        finished = False
        try:
            with sigint_ignored():  # the workers inherit SIG_IGN, so Ctrl-C reaches only the main process
                for process in workers:
                    process.start()
            self._supervise(workers, messages, bar, writer, on_episode)
            finished = True
        finally:
            stop_workers(workers, stop, grace_s=10.0 if finished else 0.0)
            bar.close()
            if writer is not None:
                writer.close()
        return self

    def _supervise(self, workers: list[Any], messages: Any, bar: Any, writer: Any,
                   on_episode: Callable[[dict], None] | None) -> None:
        """The main process's loop: absorb the workers' reports until every worker is done."""
        done: set[int] = set()
        dead_since: dict[int, float] = {}
        stats: dict[str, list[float]] = {}
        logged_at_step, logged_at_time = self.num_timesteps, time.monotonic()
        checked_at = time.monotonic()

        def log_train() -> None:
            nonlocal stats, logged_at_step, logged_at_time
            now = time.monotonic()
            self._log_train(writer, stats, (self.num_timesteps - logged_at_step) / max(now - logged_at_time, 1e-9))
            stats, logged_at_step, logged_at_time = {}, self.num_timesteps, now

        while len(done) < len(workers):
            if time.monotonic() - checked_at > 0.5:
                self._check_alive(workers, done, dead_since)
                checked_at = time.monotonic()
            try:
                msg = messages.get(timeout=0.5)
            except queue_lib.Empty:
                continue
            rank = msg["rank"]
            if msg["kind"] == "error" and msg["saferl"]:
                raise SaferlError(f"A3C worker {rank}: {msg['message']}")
            if msg["kind"] == "error":
                raise RuntimeError(f"A3C worker {rank} failed: {msg['message']}\n--- worker traceback ---\n"
                                   f"{msg['traceback']}")
            if msg["kind"] == "done":
                done.add(rank)
                if msg["open_steps"] > 0:  # the stop cut the worker's episode short: its steps count, its return not
                    self._end_episode(rank, msg["open_return"], writer, on_episode, cut=True)
                continue
            for outcome in msg["outcomes"]:
                self.counters.record(rank, dict(zip(TALLIED, outcome)))
            self.num_timesteps += len(msg["outcomes"])
            bar.update(len(msg["outcomes"]))
            for key in ("policy_loss", "value_loss", "entropy", "grad_norm"):
                stats.setdefault(key, []).append(msg[key])
            if msg["episode_return"] is not None:
                self._end_episode(rank, msg["episode_return"], writer, on_episode)
            if writer is not None and self.num_timesteps - logged_at_step >= LOG_EVERY_STEPS:
                log_train()
        if writer is not None and stats:
            log_train()

    @staticmethod
    def _check_alive(workers: list[Any], done: set[int], dead_since: dict[int, float]) -> None:
        """Fail when a worker has died without reporting (killed, crashed in C, failed to start)."""
        for rank, process in enumerate(workers):
            if rank in done or process.exitcode is None:
                continue
            since = dead_since.setdefault(rank, time.monotonic())
            if time.monotonic() - since > DEAD_WORKER_GRACE_S:
                raise RuntimeError(f"A3C worker {rank} exited with code {process.exitcode} without reporting "
                                   "(see its output on stderr)")

    def _end_episode(self, rank: int, episode_return: float, writer: Any,
                     on_episode: Callable[[dict], None] | None, cut: bool = False) -> None:
        row = self.counters.end_episode(rank, episode_return, cut=cut)
        if writer is not None and not cut:  # a cut episode's return is of part of a game
            writer.add_scalar("rollout/episode_return", row["return"], self.num_timesteps)
            writer.add_scalar("rollout/episode_game_return", row["game_return"], self.num_timesteps)
            writer.add_scalar("rollout/episode_length", row["steps"], self.num_timesteps)
        if on_episode is not None:
            on_episode(row)

    def _log_train(self, writer: Any, stats: dict[str, list[float]], fps: float) -> None:
        for key, values in stats.items():
            writer.add_scalar(f"train/{key}", float(np.mean(values)), self.num_timesteps)
        writer.add_scalar("time/fps", fps, self.num_timesteps)
        for key, value in self.counters.totals.items():
            writer.add_scalar(f"safety/{key}", value, self.num_timesteps)
        writer.flush()

    # ---- acting ------------------------------------------------------------------------------------

    def predict(self, obs: np.ndarray, state: Any = None, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """The policy's action(s) for ``obs`` (one observation, or a batch ``(N, C, H, W)``).

        :param state: the LSTM state returned by the previous call (None at the start of an episode, and
            always None without an LSTM).
        :param deterministic: the most probable action instead of a sample.
        :returns: ``(actions, state)``; ``actions`` has shape ``()`` for one observation, ``(N,)`` for a batch;
            ``state`` is ``(h, c)`` as numpy arrays ``(N, 256)``, or None without an LSTM.
        """
        obs = np.asarray(obs)
        batched = obs.ndim == len(self.model.obs_shape) + 1
        if (obs.shape[1:] if batched else obs.shape) != self.model.obs_shape:
            raise SaferlError(f"predict got observations of shape {obs.shape}; the model takes "
                              f"{self.model.obs_shape} or a batch of them")
        model = self._model_for_inference()
        x = torch.as_tensor(obs if batched else obs[None], device=self.device)
        lstm_state = None
        if state is not None and model.lstm is not None:
            lstm_state = tuple(torch.as_tensor(np.asarray(s), dtype=torch.float32, device=self.device) for s in state)
        with torch.no_grad():
            logits, _, next_state = model(x, lstm_state)
            actions = logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()
        actions_np = actions.cpu().numpy()
        if not batched:
            actions_np = actions_np.squeeze(0)
        if next_state is not None:
            next_state = tuple(s.cpu().numpy() for s in next_state)
        return actions_np, next_state

    def _model_for_inference(self) -> ActorCritic:
        """The shared model on CPU; a copy on the GPU (made again after each learn/load) otherwise."""
        if self.device.type == "cpu":
            return self.model
        if self._inference_model is None:
            copy = ActorCritic(self.model.obs_shape, self.model.n_actions, lstm=self.config.lstm)
            copy.load_state_dict(self.model.state_dict())
            self._inference_model = copy.to(self.device).eval()
        return self._inference_model


    # ---- saving ------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model, the optimizer state and JSON metadata (config, num_timesteps, obs shape,
        n_actions, safety totals, the weights' sha256) to ``path``: a folder (created), or a ``.safetensors``
        file with its ``.json`` beside it. Safetensors only: nothing saved can run code when loaded."""
        save_a3c(path, self.config, self.model, self.optimizer, self.num_timesteps, self.counters.totals,
                 len(self.counters.episodes))

    @classmethod
    def load(cls, path: str | os.PathLike[str], env_factory: EnvFactory | None = None,
             log_dir: str | os.PathLike[str] | None = None, device: str | None = None) -> A3C:
        """The agent saved at ``path`` (folder or ``.safetensors`` file), ready to predict or to learn on.

        Restores the model, the optimizer state, ``num_timesteps`` and the safety totals (not the episode
        rows). Never unpickles: the weights must be the safetensors file whose sha256 the metadata holds.

        :param env_factory: the workers' env factory for later :meth:`learn` calls (not called here).
        :param log_dir: TensorBoard folder for later :meth:`learn` calls.
        :param device: replaces the saved config's device (e.g. ``cpu`` for an agent saved with ``cuda``).
        :raises SaferlError: naming the file that is missing, corrupt, replaced or does not fit.
        """
        record, config, tensors = read_a3c(path)
        if device is not None:
            config = replace(config, device=device)
        agent = cls.__new__(cls)
        try:
            agent._setup(config, tuple(record.obs_shape), record.n_actions, env_factory, log_dir)
        except SaferlError as err:
            metadata_path = checkpoint_paths(path)[1]
            raise SaferlError(f"{metadata_path}: {err} (load(..., device='cpu') overrides the saved device)") from None
        restore_tensors(path, tensors, agent.model, agent.optimizer)
        agent.num_timesteps = record.num_timesteps
        agent.counters.totals.update(record.safety_totals)
        return agent
