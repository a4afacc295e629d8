"""stable-baselines3's DQN, A2C and PPO as saferl agents: one overseen vectorized env for the whole run.

The env stays the same across phases; :meth:`SB3Agent.set_oversight` only hands its oversight to another
overseer, so open episodes, the replay buffer and the exploration schedule go on. Schedules
(exploration, learning-rate decay) span the whole run, not one ``learn`` call: DQN learns over the
rest of the run and a callback stops it at the phase's end; A2C and PPO train on whole rollouts only
(SB3 drops a rollout that a callback cuts short untrained), so they learn to the end of the rollout
that reaches the stop, and their progress is measured against the run's length.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecFrameStack

from saferl.agents.base import OversightSpec
from saferl.device import resolve_device
from saferl.envs import game_action_names, make_vec_env
from saferl.errors import SaferlError
from saferl.games import Game
from saferl.oversight import make_overseer
from saferl.oversight.label_store import LabelStore
from saferl.oversight.metrics import SafetyCounters
from saferl.oversight.vec_wrapper import VecOversight

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"dqn": DQN, "a2c": A2C, "ppo": PPO}
PARAMS_FILE = "params.pt"
REPLAY_FILE = "replay.npz"
STATE_FILE = "agent.json"
ENV_KEYS = ("n_envs", "frame_stack", "backend")


def linear_schedule(start: float) -> Callable[[float], float]:
    """A value falling linearly from ``start`` to 0 over training (SB3 passes the progress remaining)."""
    return lambda progress_remaining: progress_remaining * start


def sb3_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """SB3 keyword arguments from YAML hyperparameters: ``lin_X`` becomes a linear schedule from X, and
    ``policy_kwargs.optimizer: RMSpropTFLike`` (with ``optimizer_eps``) becomes the optimizer class."""
    kwargs = {k: v for k, v in params.items() if k not in ENV_KEYS and k != "policy"}
    for key, value in kwargs.items():
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = linear_schedule(float(value[4:]))
    policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
    if policy_kwargs.get("optimizer") == "RMSpropTFLike":
        from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

        policy_kwargs.pop("optimizer")
        policy_kwargs["optimizer_class"] = RMSpropTFLike
        policy_kwargs["optimizer_kwargs"] = {"alpha": 0.99, "eps": float(policy_kwargs.pop("optimizer_eps", 1e-5)),
                                             "weight_decay": 0}
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


class _Drive(BaseCallback):
    """Stops ``learn`` at a step, forwards finished episodes, reports progress, logs ``safety/*``."""

    def __init__(self, agent: SB3Agent, stop_at: int | None, on_episode: Callable[[dict[str, Any]], None] | None,
                 on_progress: Callable[[int], None] | None) -> None:
        super().__init__()
        self.agent, self.stop_at, self.on_episode, self.on_progress = agent, stop_at, on_episode, on_progress
        self.seen = len(agent.counters.episodes)

    def _on_step(self) -> bool:
        counters = self.agent.counters
        for row in counters.episodes[self.seen:]:
            self.logger.record("episode/game_return", row["game_return"])
            self.logger.record("episode/return", row["return"])
            if self.on_episode is not None:
                self.on_episode(row)
        self.seen = len(counters.episodes)
        for key, value in counters.totals.items():
            self.logger.record(f"safety/{key}", value)
        if self.on_progress is not None:
            self.on_progress(self.num_timesteps)
        return self.stop_at is None or self.num_timesteps < self.stop_at


class SB3Agent:
    """A stable-baselines3 algorithm learning in ``n_envs`` overseen envs of ``game``.

    :param algorithm: ``dqn``, ``a2c`` or ``ppo``.
    :param hyperparams: from :func:`saferl.agents.load_hyperparams` (``n_envs``, ``frame_stack``, the vec env
        ``backend`` (see :func:`saferl.envs.make_vec_env`), SB3 kwargs).
    :param total_steps: the run's length in agent steps, for schedules.
    :param spec: who oversees first.
    :param with_frame: snapshot RGB frames from the start (a later overseer, such as a Blocker, needs them).
    :param log_dir: TensorBoard folder (None: none).
    :param env_kwargs: ALE settings over the game's (e.g. ``max_num_frames_per_episode``).
    """

    def __init__(self, algorithm: str, game: Game, hyperparams: dict[str, Any], total_steps: int, spec: OversightSpec,
                 seed: int = 0, device: str = "auto", with_frame: bool = False,
                 log_dir: str | Path | None = None, env_kwargs: dict[str, Any] | None = None) -> None:
        self.algorithm, self.game, self.total_steps, self.seed = algorithm, game, total_steps, seed
        self._store: LabelStore | None = None
        overseer, store = self._open(spec)
        oversight = make_vec_env(game, n_envs=int(hyperparams.get("n_envs", 1)), overseer=overseer, mode=spec.mode,
                                 penalty=spec.penalty, label_store=store, seed=seed, with_frame=with_frame,
                                 first_episode=store.next_episode() if store is not None else 0,
                                 backend=hyperparams.get("backend"),
                                 **(env_kwargs or {}))
        self.oversight: VecOversight = oversight
        venv = VecFrameStack(oversight, int(hyperparams.get("frame_stack", 4)))
        self.model = ALGORITHMS[algorithm](hyperparams.get("policy", "CnnPolicy"), venv, seed=seed, verbose=0,
                                           device=resolve_device(device),
                                           tensorboard_log=str(log_dir) if log_dir is not None else None,
                                           **sb3_kwargs(hyperparams))
        if isinstance(self.model, OnPolicyAlgorithm):  # learn's total is the next stop: progress is the run's
            self.model._update_current_progress_remaining = self._run_progress

    def _run_progress(self, num_timesteps: int, total_timesteps: int) -> None:
        """SB3's progress remaining (what schedules read), over the whole run rather than one ``learn`` call."""
        self.model._current_progress_remaining = max(0.0, 1.0 - num_timesteps / max(self.total_steps, 1))

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def counters(self) -> SafetyCounters:
        return self.oversight.counters

    def _open(self, spec: OversightSpec) -> tuple[Any, LabelStore | None]:
        """The overseer and label store ``spec`` names; the previous store is closed."""
        if self._store is not None:
            self._store.close()
            self._store = None
        overseer = make_overseer(spec.overseer, seed=self.seed, game=self.game.name, **spec.options)
        if spec.label_dir is not None:
            self._store = LabelStore.open_or_create(spec.label_dir, self.game.name, game_action_names(self.game))
        if hasattr(overseer, "label_store"):  # the human overseer relabels its stored blocks on undo; the deferring
            overseer.label_store = self._store  # one recalls a resumed run's labels
        return overseer, self._store

    def _close_overseer(self) -> None:
        """Close the overseer's window, if it has one (the human overseer's)."""
        close = getattr(self.oversight.overseer, "close", None)
        if close is not None:
            close()

    def overseer_stats(self) -> dict[str, Any]:
        stats = getattr(self.oversight.overseer, "stats", None)
        return dict(stats()) if stats is not None else {}

    def set_oversight(self, spec: OversightSpec) -> None:
        self._close_overseer()
        overseer, store = self._open(spec)
        self.oversight.set_overseer(overseer, spec.mode, store)
        self.oversight.intervention.penalty = float(spec.penalty)

    def learn_until(self, step: int, on_episode: Callable[[dict[str, Any]], None] | None = None,
                    on_progress: Callable[[int], None] | None = None) -> None:
        if step <= self.num_timesteps:
            return
        if isinstance(self.model, OnPolicyAlgorithm):  # on to the end of the rollout that reaches ``step``
            rollout = self.model.n_steps * self.model.n_envs
            remaining, stop_at = -(-(step - self.num_timesteps) // rollout) * rollout, None
        else:
            remaining, stop_at = max(self.total_steps, step) - self.num_timesteps, step
        self.model.learn(remaining, callback=_Drive(self, stop_at, on_episode, on_progress), reset_num_timesteps=False,
                         tb_log_name=self.algorithm)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.get_parameters(), folder / PARAMS_FILE)
        state = {"algorithm": self.algorithm, "num_timesteps": self.num_timesteps,
                 "n_updates": int(getattr(self.model, "_n_updates", 0)), "episode_num": int(self.model._episode_num)}
        if isinstance(self.model, OffPolicyAlgorithm):
            buffer = self.model.replay_buffer
            arrays = {name: getattr(buffer, name) for name in ("observations", "actions", "rewards", "dones", "timeouts")}
            if not buffer.optimize_memory_usage:
                arrays["next_observations"] = buffer.next_observations
            np.savez(folder / REPLAY_FILE, pos=np.int64(buffer.pos), full=np.bool_(buffer.full), **arrays)
        (folder / STATE_FILE).write_text(json.dumps(state))

    def load(self, folder: Path) -> None:
        try:
            state = json.loads((folder / STATE_FILE).read_text())
            params = torch.load(folder / PARAMS_FILE, map_location=self.model.device, weights_only=True)
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as err:
            raise SaferlError(f"cannot resume the agent from {folder}: {err}; start the run afresh (delete the "
                              "folder) or restore the checkpoint") from None
        if state.get("algorithm") != self.algorithm:
            raise SaferlError(f"{folder / STATE_FILE} holds a {state.get('algorithm')} agent, not {self.algorithm}")
        self.model.set_parameters(params, exact_match=True, device=self.model.device)
        self.model.num_timesteps = int(state["num_timesteps"])
        self.model._n_updates = int(state["n_updates"])
        self.model._episode_num = int(state["episode_num"])
        if isinstance(self.model, OffPolicyAlgorithm):
            buffer = self.model.replay_buffer
            with np.load(folder / REPLAY_FILE, allow_pickle=False) as saved:
                for name in saved.files:
                    if name not in ("pos", "full"):
                        getattr(buffer, name)[...] = saved[name]
                buffer.pos, buffer.full = int(saved["pos"]), bool(saved["full"])

    def close(self) -> None:
        self._close_overseer()
        if self._store is not None:
            self._store.close()
            self._store = None
        self.model.get_env().close()
