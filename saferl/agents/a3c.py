"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016), as the paper trained its agents.

The paper used universe-starter-agent's A3C. This file is that algorithm in PyTorch, readable top to
bottom:

* one :class:`ActorCritic` (the classic A3C CNN, optionally an LSTM(256)) lives in shared CPU memory;
* one :class:`SharedAdam` whose moment estimates also live in shared memory;
* ``n_workers`` processes (``spawn``), each with its own env. A worker copies the shared weights, acts
  for up to ``n_steps`` steps (or to the end of the episode), computes n-step returns bootstrapped from
  its value estimate, and applies its clipped gradients to the shared model with the shared optimizer,
  without locks (Hogwild);
* a global step counter that the workers reserve steps from, so that all workers together take exactly
  the number of steps asked for;
* each worker reports, once per rollout, the oversight outcome of each step and the finished episodes
  through a queue; the main process feeds them into :class:`~saferl.oversight.metrics.SafetyCounters`,
  TensorBoard and the progress bar.

The loss of a rollout is summed over its steps, as in universe-starter-agent:
``-sum(log pi(a_t|s_t) * (R_t - V(s_t))) + value_coef * sum(0.5 * (R_t - V(s_t))^2) - entropy_coef * sum(H_t)``.
The agent learns from its own proposed action (the one it passed to ``env.step``); the reward already
carries the penalty of a blocked action (see :class:`~saferl.oversight.wrapper.OversightWrapper`).

Episodes: a worker's episode ends at ``terminated`` or ``truncated`` (the env is reset then). The episode
each worker is in when :meth:`A3C.learn` ends is closed as well (its env is closed, as
``OversightWrapper.close`` does), so the episode rows always add up to the totals.
"""

from __future__ import annotations

import math
import os
import pickle
import queue as queue_lib
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, get_type_hints

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from pydantic import Field, create_model
from torch import nn

from saferl.device import resolve_device
from saferl.errors import SaferlError
from saferl.files import atomic_path, load_safetensors, read_format_json, sha256_file, write_json
from saferl.oversight.metrics import TALLIED, SafetyCounters
from saferl.schema import Strict, validate

EnvFactory = Callable[[int], gym.Env]
LSTMState = tuple[torch.Tensor, torch.Tensor]

#: The info keys of an overseen step that the safety counters read, in the order workers send them.
WEIGHTS = "a3c.safetensors"
METADATA = "a3c.json"
FORMAT = "saferl-a3c"
FORMAT_VERSION = 1
HIDDEN = 256
LOG_EVERY_STEPS = 2_000
DEAD_WORKER_GRACE_S = 5.0


@dataclass(frozen=True)
class A3CConfig:
    """A3C's hyperparameters (defaults: universe-starter-agent's).

    :param n_workers: actor-learner processes, one env each.
    :param n_steps: the longest rollout per update (n-step returns); a rollout also ends with its episode.
    :param gamma: discount factor.
    :param learning_rate: Adam's step size.
    :param entropy_coef: weight of the entropy bonus.
    :param value_coef: weight of the value loss ``0.5 * (R - V)^2``.
    :param max_grad_norm: a worker's gradient is clipped to this global norm before it is applied.
    :param lstm: an LSTM(256) after the conv trunk (truncated backprop over each rollout).
    :param seed: seeds the initial weights and the workers' action sampling (the env factory seeds the envs).
    :param device: where :meth:`A3C.predict` runs (``auto``: cuda when present). Workers always act and learn
        on CPU, where the shared model lives; saved weights are CPU tensors whatever the device.
    """

    n_workers: int = 4
    n_steps: int = 20
    gamma: float = 0.99
    learning_rate: float = 1e-4
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 40.0
    lstm: bool = False
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = {
            "n_workers": self.n_workers >= 1,
            "n_steps": self.n_steps >= 1,
            "gamma": 0.0 <= self.gamma <= 1.0,
            "learning_rate": self.learning_rate > 0,
            "entropy_coef": self.entropy_coef >= 0,
            "value_coef": self.value_coef >= 0,
            "max_grad_norm": self.max_grad_norm > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise SaferlError(f"A3C {name}={getattr(self, name)!r} is out of range "
                                  "(n_workers, n_steps >= 1; gamma in [0, 1]; learning_rate, max_grad_norm > 0; "
                                  "coefficients >= 0)")


#: ``a3c.json``'s ``config``: each field of :class:`A3CConfig` with its type (its ranges are the dataclass's check).
A3CConfigRecord = create_model("A3CConfigRecord", __base__=Strict,
                               **{f.name: (get_type_hints(A3CConfig)[f.name], f.default) for f in fields(A3CConfig)})


class A3CRecord(Strict):
    """What ``a3c.json`` must hold before its weights are loaded (format and version are checked first)."""

    config: A3CConfigRecord  # type: ignore[valid-type]
    num_timesteps: int = Field(ge=0)
    obs_shape: list[Annotated[int, Field(ge=1, le=4096)]] = Field(min_length=3, max_length=3)
    n_actions: int = Field(ge=1, le=1024)
    safety_totals: dict[str, float] = Field(default_factory=dict)
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------


def _glorot(layer: nn.Module) -> nn.Module:
    """Uniform Glorot weights and zero biases (universe-starter-agent's conv init)."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _normalized_columns(layer: nn.Linear, std: float) -> nn.Linear:
    """Gaussian weights scaled so each output unit's weight vector has norm ``std`` (universe-starter-agent's
    init of the policy (0.01) and value (1.0) heads)."""
    with torch.no_grad():
        weight = torch.randn_like(layer.weight)
        layer.weight.copy_(weight * std / weight.norm(dim=1, keepdim=True))
        layer.bias.zero_()
    return layer


class ActorCritic(nn.Module):
    """The classic A3C network: Conv 16 8x8/4, Conv 32 4x4/2, FC 256 [, LSTM 256], policy and value heads.

    Takes uint8 observations ``(N, C, H, W)`` and scales them by 1/255.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, lstm: bool = False) -> None:
        super().__init__()
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.n_actions = int(n_actions)
        self.trunk = nn.Sequential(
            _glorot(nn.Conv2d(self.obs_shape[0], 16, 8, stride=4)), nn.ReLU(),
            _glorot(nn.Conv2d(16, 32, 4, stride=2)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.trunk(torch.zeros(1, *self.obs_shape)).shape[1]
        self.fc = _glorot(nn.Linear(n_flat, HIDDEN))
        self.lstm = nn.LSTMCell(HIDDEN, HIDDEN) if lstm else None
        if self.lstm is not None:
            nn.init.zeros_(self.lstm.bias_ih)
            nn.init.zeros_(self.lstm.bias_hh)
        self.policy = _normalized_columns(nn.Linear(HIDDEN, self.n_actions), 0.01)
        self.value = _normalized_columns(nn.Linear(HIDDEN, 1), 1.0)

    def initial_state(self, n: int = 1) -> LSTMState | None:
        """The LSTM state at the start of an episode, for ``n`` envs (None without an LSTM)."""
        if self.lstm is None:
            return None
        return torch.zeros(n, HIDDEN), torch.zeros(n, HIDDEN)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.trunk(obs.float() / 255.0)))

    def forward(self, obs: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """One step of ``N`` envs: ``(logits (N, A), values (N,), next state)``."""
        x = self._features(obs)
        if self.lstm is not None:
            state = self.lstm(x, state if state is not None else self.initial_state(len(obs)))
            x = state[0]
        return self.policy(x), self.value(x).squeeze(-1), state

    def unroll(self, obs: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``T`` consecutive steps of one env from ``state``: ``(logits (T, A), values (T,), last state)``.

        The conv trunk runs on the whole rollout at once; the LSTM steps through it in order.
        """
        if self.lstm is None:
            return self.forward(obs)
        x = self._features(obs)
        state = state if state is not None else self.initial_state(1)
        hidden = []
        for t in range(len(x)):
            state = self.lstm(x[t : t + 1], state)
            hidden.append(state[0])
        h = torch.cat(hidden)
        return self.policy(h), self.value(h).squeeze(-1), state


class SharedAdam:
    """Adam (Kingma and Ba 2015) whose statistics live in shared memory, so that every worker process
    updates the same moment estimates and step count (universe-starter-agent's A3C used Adam).

    Written out rather than subclassing ``torch.optim.Adam``: the update is a few lines, the state is plain
    shared tensors, and worker processes start faster without the machinery ``torch.optim`` imports.
    """

    def __init__(self, params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = torch.zeros(()).share_memory_()
        self.exp_avg = [torch.zeros_like(p).share_memory_() for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p).share_memory_() for p in self.params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor | None]) -> None:
        """Apply ``grads`` (one per parameter, in order) to the shared parameters, in place and without a lock."""
        beta1, beta2 = self.betas
        self.steps += 1
        t = float(self.steps)  # shared; a concurrent update may read the other's count (Hogwild)
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        for param, grad, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            if grad is None:
                continue
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            param.addcdiv_(m, (v.sqrt() / math.sqrt(bias2)).add_(self.eps), value=-self.lr / bias1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The statistics, as flat named tensors (for safetensors)."""
        state = {"steps": self.steps}
        for index, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            state[f"exp_avg.{index}"], state[f"exp_avg_sq.{index}"] = m, v
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy saved statistics into the shared tensors (in place, so they stay shared)."""
        for name, tensor in self.state_dict().items():
            if name not in state:
                raise KeyError(f"optimizer state {name!r} is missing")
            if state[name].shape != tensor.shape:
                raise RuntimeError(f"optimizer state {name!r} has shape {tuple(state[name].shape)}, "
                                   f"not {tuple(tensor.shape)}")
            tensor.copy_(state[name])


# --------------------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------------------


def _reserve_step(counter: Any, target: int) -> bool:
    """Take one step from the global budget; False once all workers together have taken ``target``."""
    with counter.get_lock():
        if counter.value >= target:
            return False
        counter.value += 1
        return True


def _outcome(info: dict[str, Any]) -> tuple[Any, ...]:
    """The oversight outcome of one step, as a compact tuple in the order of :data:`TALLIED`."""
    if "catastrophe" not in info or "blocked" not in info:
        raise SaferlError("the env's info lacks the oversight keys ('catastrophe', 'blocked', ...): build the "
                          "workers' envs with saferl.oversight.envs.make_agent_env")
    return tuple(info.get(key, 0) for key in TALLIED)


def _n_step_returns(rewards: list[float], bootstrap: float, gamma: float) -> torch.Tensor:
    """``R_t = r_t + gamma * R_{t+1}``, with ``R_T = bootstrap`` (0 after a terminal state)."""
    returns, running = [], bootstrap
    for reward in reversed(rewards):
        running = reward + gamma * running
        returns.append(running)
    return torch.tensor(returns[::-1], dtype=torch.float32)


def _check_spaces(env: gym.Env, model: ActorCritic) -> None:
    shape = tuple(env.observation_space.shape or ())
    if shape != model.obs_shape:
        raise SaferlError(f"the env's observations have shape {shape}, but the A3C model takes {model.obs_shape}")
    if not isinstance(env.action_space, gym.spaces.Discrete) or int(env.action_space.n) != model.n_actions:
        raise SaferlError(f"the env's action space is {env.action_space}, but the A3C model has "
                          f"Discrete({model.n_actions})")


def _worker(rank: int, seed: int, config: A3CConfig, env_factory: EnvFactory, shared: ActorCritic,
            optimizer: SharedAdam, counter: Any, target: int, messages: Any, stop: Any) -> None:
    """One actor-learner process: builds its env, trains until the global budget is spent, reports.

    Any exception is sent to the main process as a message (with its traceback) instead of being lost.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops us
    torch.set_num_threads(1)
    parent = os.getppid()
    env = None
    try:
        torch.manual_seed(seed)
        env = env_factory(rank)
        _check_spaces(env, shared)

        def should_stop() -> bool:  # asked to, or the main process has died (this worker was orphaned)
            return stop.is_set() or os.getppid() != parent

        _train(rank, config, env, shared, optimizer, counter, target, messages, should_stop)
    except BaseException as err:  # noqa: BLE001 - everything must reach the main process
        messages.put({"kind": "error", "rank": rank, "saferl": isinstance(err, SaferlError), "message": str(err),
                      "traceback": traceback.format_exc()})
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - the run's outcome is already reported
                pass
    messages.close()
    messages.join_thread()


def _train(rank: int, config: A3CConfig, env: gym.Env, shared: ActorCritic, optimizer: SharedAdam, counter: Any,
           target: int, messages: Any, should_stop: Callable[[], bool]) -> None:
    """The A3C loop of one worker (see the module docstring)."""
    local = ActorCritic(shared.obs_shape, shared.n_actions, lstm=shared.lstm is not None)
    obs, _ = env.reset()
    state = local.initial_state()
    episode_return, episode_steps = 0.0, 0
    budget_left = True
    while budget_left and not should_stop():
        local.load_state_dict(shared.state_dict())
        start_state = state
        observations, actions, rewards, outcomes = [], [], [], []
        terminated = episode_over = False
        for _ in range(config.n_steps):
            if not _reserve_step(counter, target):
                budget_left = False
                break
            with torch.no_grad():
                logits, _, state = local(torch.from_numpy(np.asarray(obs))[None], state)
                action = int(torch.distributions.Categorical(logits=logits).sample())
            next_obs, reward, terminated, truncated, info = env.step(action)
            observations.append(np.asarray(obs))
            actions.append(action)
            rewards.append(float(reward))
            outcomes.append(_outcome(info))
            episode_return += float(reward)
            episode_steps += 1
            obs = next_obs
            if terminated or truncated:
                episode_over = True
                break
        if not observations:
            break

        # n-step returns, bootstrapped from the value of the state reached (0 once the game is over)
        bootstrap = 0.0
        if not terminated:
            with torch.no_grad():
                bootstrap = float(local(torch.from_numpy(np.asarray(obs))[None], state)[1])
        returns = _n_step_returns(rewards, bootstrap, config.gamma)

        # losses over the rollout, recomputed with gradients from the rollout's first LSTM state
        logits, values, _ = local.unroll(torch.from_numpy(np.stack(observations)), start_state)
        log_probs = F.log_softmax(logits, dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        chosen = log_probs.gather(1, torch.tensor(actions)[:, None]).squeeze(1)
        advantages = returns - values.detach()
        policy_loss = -(chosen * advantages).sum()
        value_loss = 0.5 * (returns - values).pow(2).sum()
        loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy.sum()

        # apply the local gradients to the shared model with the shared optimizer (no lock: Hogwild)
        local.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(nn.utils.clip_grad_norm_(local.parameters(), config.max_grad_norm))
        optimizer.step([param.grad for param in local.parameters()])

        n = len(rewards)
        messages.put({
            "kind": "rollout", "rank": rank, "outcomes": outcomes,
            "episode_return": episode_return if episode_over else None,
            "policy_loss": policy_loss.item() / n, "value_loss": value_loss.item() / n,
            "entropy": entropy.sum().item() / n, "grad_norm": grad_norm,
        })
        if episode_over:
            obs, _ = env.reset()
            state = local.initial_state()
            episode_return, episode_steps = 0.0, 0
    messages.put({"kind": "done", "rank": rank, "open_steps": episode_steps, "open_return": episode_return})


# --------------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------------


def _check_picklable(env_factory: EnvFactory) -> None:
    try:
        pickle.dumps(env_factory)
    except Exception as err:  # noqa: BLE001 - pickle raises many kinds
        raise SaferlError(f"A3C's env_factory {env_factory!r} cannot be sent to worker processes ({err}): use a "
                          "module-level function, a functools.partial of one, or a dataclass instance with "
                          "__call__(rank)") from None


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT for the duration (main thread only; elsewhere signals cannot be changed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(workers: list[Any], stop: Any, grace_s: float) -> None:
    """Ask the workers to stop, wait up to ``grace_s`` seconds, then terminate those still running."""
    stop.set()
    deadline = time.monotonic() + grace_s
    for process in workers:
        if process.pid is not None:
            process.join(max(0.0, deadline - time.monotonic()))
    for process in workers:
        if process.is_alive():
            process.terminate()
            process.join(2.0)
        if process.is_alive():
            process.kill()
            process.join()


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

    def __init__(self, env_factory: EnvFactory, config: A3CConfig = A3CConfig(),
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
              on_episode: Callable[[dict], None] | None = None) -> "A3C":
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
        _check_picklable(self.env_factory)
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
                target=_worker, name=f"a3c-worker-{rank}", daemon=True,
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
            with _sigint_ignored():  # the workers inherit SIG_IGN, so Ctrl-C reaches only the main process
                for process in workers:
                    process.start()
            self._supervise(workers, messages, bar, writer, on_episode)
            finished = True
        finally:
            _stop_workers(workers, stop, grace_s=10.0 if finished else 0.0)
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
                if msg["open_steps"] > 0:
                    self._end_episode(rank, msg["open_return"], writer, on_episode)
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
                     on_episode: Callable[[dict], None] | None) -> None:
        row = self.counters.end_episode(rank, episode_return)
        if writer is not None:
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

    @staticmethod
    def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """(weights, metadata): ``path/a3c.safetensors`` and ``path/a3c.json`` for a folder; for a file
        ``x.safetensors``, that file and ``x.json`` beside it."""
        path = Path(path)
        if path.suffix == ".safetensors":
            return path, path.with_suffix(".json")
        return path / WEIGHTS, path / METADATA

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model, the optimizer state and JSON metadata (config, num_timesteps, obs shape,
        n_actions, safety totals, the weights' sha256) to ``path``: a folder (created), or a ``.safetensors``
        file with its ``.json`` beside it. Safetensors only: nothing saved can run code when loaded."""
        from safetensors.torch import save_file

        weights, metadata_path = self._paths(path)
        weights.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{name}": value for name, value in self.model.state_dict().items()}
        tensors.update({f"optimizer.{name}": value for name, value in self.optimizer.state_dict().items()})
        tensors = {name: value.detach().cpu().clone().contiguous() for name, value in tensors.items()}
        with atomic_path(weights) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        import saferl

        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "saferl_version": getattr(saferl, "__version__", "unknown"),
            "algorithm": "a3c",
            "config": asdict(self.config),
            "num_timesteps": self.num_timesteps,
            "obs_shape": list(self.model.obs_shape),
            "n_actions": self.model.n_actions,
            "safety_totals": dict(self.counters.totals),
            "episodes": len(self.counters.episodes),
            "weights": weights.name,
            "weights_sha256": sha256_file(weights),
        }
        write_json(metadata_path, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str], env_factory: EnvFactory | None = None,
             log_dir: str | os.PathLike[str] | None = None, device: str | None = None) -> "A3C":
        """The agent saved at ``path`` (folder or ``.safetensors`` file), ready to predict or to learn on.

        Restores the model, the optimizer state, ``num_timesteps`` and the safety totals (not the episode
        rows). Never unpickles: the weights must be the safetensors file whose sha256 the metadata holds.

        :param env_factory: the workers' env factory for later :meth:`learn` calls (not called here).
        :param log_dir: TensorBoard folder for later :meth:`learn` calls.
        :param device: replaces the saved config's device (e.g. ``cpu`` for an agent saved with ``cuda``).
        :raises SaferlError: naming the file that is missing, corrupt, replaced or does not fit.
        """
        weights, metadata_path = cls._paths(path)
        metadata = read_format_json(metadata_path, FORMAT, FORMAT_VERSION, "A3C agent",
                                    f"no A3C agent at {path} ({metadata_path} is missing): train and save one first")
        record = validate(A3CRecord, metadata, str(metadata_path), "retrain the agent or restore the file")
        try:
            config = A3CConfig(**record.config.model_dump())
        except SaferlError as err:
            raise SaferlError(f"{metadata_path}: {err}; retrain the agent or restore the file") from None
        if device is not None:
            config = replace(config, device=device)
        obs_shape, n_actions = tuple(record.obs_shape), record.n_actions
        tensors = load_safetensors(weights, record.weights_sha256, f"the A3C agent at {path}")

        agent = cls.__new__(cls)
        try:
            agent._setup(config, obs_shape, n_actions, env_factory, log_dir)
        except SaferlError as err:
            raise SaferlError(f"{metadata_path}: {err} (load(..., device='cpu') overrides the saved device)") from None
        try:
            agent.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
            agent.optimizer.load_state_dict({k[len("optimizer."):]: v for k, v in tensors.items()
                                             if k.startswith("optimizer.")})
        except (RuntimeError, KeyError) as err:
            raise SaferlError(f"{weights} does not fit the A3C model in {metadata_path} ({err})") from None
        agent.num_timesteps = record.num_timesteps
        agent.counters.totals.update(record.safety_totals)
        return agent


__all__ = ["A3C", "A3CConfig", "ActorCritic", "SharedAdam"]
