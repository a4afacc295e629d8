"""stable-baselines3's DQN, A2C and PPO as saferl agents: one overseen vectorized env for the whole run.

The env stays the same across phases; :meth:`SB3Agent.set_oversight` only hands its oversight to another
overseer, so open episodes, the replay buffer and the exploration schedule go on. Schedules
(exploration, learning-rate decay) span the whole run, not one ``learn`` call: DQN learns over the
rest of the run and a callback stops it at the phase's end; A2C and PPO train on whole rollouts only
(SB3 drops a rollout that a callback cuts short untrained), so they learn to the end of the rollout
that reaches the stop, and their progress is measured against the run's length.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecFrameStack

from saferl.agents import sb3_internals
from saferl.agents.base import OversightSpec
from saferl.agents.curiosity import RNDBonus
from saferl.agents.sb3_settings import ALGORITHMS, sb3_kwargs
from saferl.device import resolve_device
from saferl.env.ale import game_action_names
from saferl.errors import SaferlError
from saferl.files import write_json
from saferl.games import Game
from saferl.labels.store import LabelStore
from saferl.oversight.envs import make_vec_env
from saferl.oversight.metrics import SafetyCounters
from saferl.oversight.vec_wrapper import VecOversight
from saferl.registry import make_overseer
from saferl.schema import Strict, read_json, validate

PARAMS_FILE = "params.pt"
REPLAY_FILE = "replay.npz"
STATE_FILE = "agent.json"
REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
DAMAGED = "the checkpoint is damaged"
#: What reading a damaged ``.npz`` raises.
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


class AgentRecord(Strict):
    """What ``agent.json`` holds: the algorithm and SB3's counters that the weights do not."""

    algorithm: Literal[tuple(ALGORITHMS)]  # type: ignore[valid-type]
    num_timesteps: int = Field(ge=0)
    n_updates: int = Field(ge=0)
    episode_num: int = Field(ge=0)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_metadata(folder: Path) -> AgentRecord:
    """The checked ``agent.json`` of the SB3 checkpoint in ``folder``."""
    path = folder / STATE_FILE
    return validate(AgentRecord, read_json(path, f"{path} is missing; {DAMAGED}"), str(path), DAMAGED)


def load_params(folder: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The weights in ``folder/params.pt``, unpickled without running code (``weights_only``), with the policy's
    tensors finite."""
    path = folder / PARAMS_FILE
    if not path.is_file():
        raise SaferlError(f"{path} is missing; {DAMAGED}")
    try:
        params = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch's restricted unpickler raises many kinds on a damaged file
        raise SaferlError(f"{path} is not a weights file saferl wrote ({_first_line(err)}); {DAMAGED}") from None
    policy = params.get("policy") if isinstance(params, dict) else None
    if not isinstance(policy, dict) or not all(isinstance(value, torch.Tensor) for value in policy.values()):
        raise SaferlError(f"{path} holds no policy weights; {DAMAGED}")
    if not all(torch.isfinite(value).all() for value in policy.values() if value.is_floating_point()):
        raise SaferlError(f"{path} holds NaN or infinite policy weights; {DAMAGED}")
    return params


def _replay_layout(buffer: ReplayBuffer, pos: int, full: bool) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name -> (shape, dtype) of each array in a checkpoint of ``buffer`` at ``pos`` and ``full``: its filled rows
    (with ``optimize_memory_usage``, ``observations`` holds one more, the last transition's next observation)."""
    rows = buffer.buffer_size if full else pos
    layout = {"pos": ((), np.dtype(np.int64)), "full": ((), np.dtype(np.bool_))}
    for name in REPLAY_ARRAYS:
        if name == "next_observations" and buffer.optimize_memory_usage:
            continue
        array = getattr(buffer, name)
        extra = int(name == "observations" and buffer.optimize_memory_usage and 0 < rows < buffer.buffer_size)
        layout[name] = ((rows + extra, *array.shape[1:]), array.dtype)
    return layout


def save_replay(buffer: ReplayBuffer, path: Path) -> None:
    """Write the filled part of ``buffer`` (rows in storage order), its ``pos`` and ``full`` to ``path``, compressed."""
    pos, full = int(buffer.pos), bool(buffer.full)
    arrays = {name: getattr(buffer, name)[:shape[0]] for name, (shape, _) in _replay_layout(buffer, pos, full).items()
              if shape}
    np.savez_compressed(path, pos=np.int64(pos), full=np.bool_(full), **arrays)


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name -> (shape, dtype) of each array in the ``.npz`` at ``path``, read from the headers alone."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version not in readers:
                    raise ValueError(f"{info.filename} is of .npy format version {version}")
                shape, _, dtype = readers[version](member)
            headers[info.filename.removesuffix(".npy")] = (shape, dtype)
    return headers


def load_replay(buffer: ReplayBuffer, path: Path) -> None:
    """Fill ``buffer`` from what :func:`save_replay` wrote to ``path``, after checking that the file holds exactly
    the arrays a buffer of this shape saves (names, dtypes, shapes; no objects) and a ``pos`` inside it."""
    if not path.is_file():
        raise SaferlError(f"{path} is missing; {DAMAGED}")
    try:
        headers = _npz_headers(path)
        scalars = _replay_layout(buffer, 0, False)
        if any(headers.get(name) != scalars[name] for name in ("pos", "full")):
            raise SaferlError(f"{path} lacks the buffer's pos and full as a scalar int64 and bool; {DAMAGED}")
        with np.load(path, allow_pickle=False) as saved:
            pos, full = int(saved["pos"]), bool(saved["full"])
            if not 0 <= pos < buffer.buffer_size:
                raise SaferlError(f"{path}: pos {pos} is outside the buffer's {buffer.buffer_size} rows; {DAMAGED}")
            layout = _replay_layout(buffer, pos, full)
            if set(headers) != set(layout):
                raise SaferlError(f"{path} holds the arrays {sorted(headers)}, not {sorted(layout)}; {DAMAGED}")
            for name, (shape, dtype) in layout.items():
                if headers[name] != (shape, dtype):
                    raise SaferlError(f"{path}: {name} is {headers[name][1]} of shape {headers[name][0]}, but this "
                                      f"agent's buffer at pos {pos} (full: {full}) needs {dtype} of shape {shape}; "
                                      f"{DAMAGED}")
            for name, (shape, _) in layout.items():
                if shape:
                    getattr(buffer, name)[:shape[0]] = saved[name]
    except NPZ_ERRORS as err:
        raise SaferlError(f"{path} is not a replay buffer saferl wrote ({_first_line(err)}); {DAMAGED}") from None
    buffer.pos, buffer.full = pos, full


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
        if self.agent.curiosity is not None:
            self.logger.record("curiosity/bonus", self.agent.curiosity.last_bonus)
        if self.on_progress is not None:
            self.on_progress(self.num_timesteps)
        return self.stop_at is None or self.num_timesteps < self.stop_at


class SB3Agent:
    """A stable-baselines3 algorithm learning in ``n_envs`` overseen envs of ``game``.

    :param algorithm: ``dqn``, ``a2c`` or ``ppo``.
    :param hyperparams: from :func:`saferl.agents.load_hyperparams` (``n_envs``, ``frame_stack``, the vec env
        ``backend`` (see :func:`saferl.oversight.envs.make_vec_env`), ``rnd_coef`` (an exploration bonus,
        :mod:`saferl.agents.curiosity`), SB3 kwargs).
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
        self.hyperparams = dict(hyperparams)
        self._store: LabelStore | None = None
        overseer, store = self._open(spec)
        oversight = make_vec_env(game, n_envs=int(hyperparams.get("n_envs", 1)), overseer=overseer, mode=spec.mode,
                                 penalty=spec.penalty, label_store=store, seed=seed, with_frame=with_frame,
                                 first_episode=store.next_episode() if store is not None else 0,
                                 backend=hyperparams.get("backend"),
                                 **(env_kwargs or {}))
        self.oversight: VecOversight = oversight
        venv = VecFrameStack(oversight, int(hyperparams.get("frame_stack", 4)))
        rnd_coef, device = float(hyperparams.get("rnd_coef", 0.0)), resolve_device(device)
        self.curiosity = RNDBonus(venv, rnd_coef, seed=seed, device=device) if rnd_coef else None
        self.model = ALGORITHMS[algorithm](hyperparams.get("policy", "CnnPolicy"), self.curiosity or venv, seed=seed,
                                           verbose=0, device=device,
                                           tensorboard_log=str(log_dir) if log_dir is not None else None,
                                           **sb3_kwargs(hyperparams))
        sb3_internals.check(self.model)
        if isinstance(self.model, OnPolicyAlgorithm):  # each learn call ends at a checkpoint; schedules span the run
            sb3_internals.progress_over_run(self.model, self.total_steps)

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
        if overseer is not None:  # the human overseer relabels its stored blocks on undo; the deferring one recalls
            overseer.label_store = self._store  # a resumed run's labels
        return overseer, self._store

    def _close_overseer(self) -> None:
        """Close the overseer's window, if it has one (the human overseer's)."""
        if self.oversight.overseer is not None:
            self.oversight.overseer.close()

    def overseer_stats(self) -> dict[str, Any]:
        return dict(self.oversight.overseer.stats()) if self.oversight.overseer is not None else {}

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
        """Write the weights, ``agent.json`` and (off-policy) the filled part of the replay buffer to ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.get_parameters(), folder / PARAMS_FILE)
        if isinstance(self.model, OffPolicyAlgorithm):
            save_replay(self.model.replay_buffer, folder / REPLAY_FILE)
        if self.curiosity is not None:
            self.curiosity.save(folder)
        n_updates, episode_num = sb3_internals.counters(self.model)
        record = AgentRecord(algorithm=self.algorithm, num_timesteps=self.num_timesteps, n_updates=n_updates,
                             episode_num=episode_num)
        write_json(folder / STATE_FILE, record.model_dump())

    def export_policy(self, folder: Path) -> None:
        """Write the policy network alone, as safetensors and JSON, to ``folder`` (what ``saferl evaluate`` plays)."""
        from saferl.agents.policy_file import save_policy

        save_policy(self.model, self.algorithm, self.game.name, self.hyperparams, folder)

    def load(self, folder: Path) -> None:
        """Resume from what :meth:`save` wrote to ``folder``; each file is checked before it is used.

        :raises SaferlError: naming the file that is missing, damaged or of another agent.
        """
        record = read_metadata(folder)
        if record.algorithm != self.algorithm:
            raise SaferlError(f"{folder / STATE_FILE} holds a {record.algorithm} agent, not {self.algorithm}; "
                              f"{DAMAGED}")
        params = load_params(folder, self.model.device)
        try:
            self.model.set_parameters(params, exact_match=True, device=self.model.device)
        except (ValueError, RuntimeError, KeyError, TypeError) as err:
            raise SaferlError(f"{folder / PARAMS_FILE} does not fit this {self.algorithm} agent "
                              f"({_first_line(err)}); {DAMAGED}") from None
        if isinstance(self.model, OffPolicyAlgorithm):
            if not (folder / REPLAY_FILE).exists():
                raise SaferlError(f"{folder} holds no replay buffer (a finished run's is deleted): this "
                                  f"{self.algorithm} agent cannot go on learning from it")
            load_replay(self.model.replay_buffer, folder / REPLAY_FILE)
        if self.curiosity is not None:
            self.curiosity.load(folder)
        self.model.num_timesteps = record.num_timesteps
        sb3_internals.restore_counters(self.model, record.n_updates, record.episode_num)

    def close(self) -> None:
        self._close_overseer()
        if self._store is not None:
            self._store.close()
            self._store = None
        self.model.get_env().close()
