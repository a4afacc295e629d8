"""One A3C worker process: the actor-learner loop, n-step returns, the loss, and the outcome of each step it reports.

A worker copies the shared weights, acts for up to ``n_steps`` steps (or to the end of the episode), computes
n-step returns bootstrapped from its value estimate, and applies its clipped gradients to the shared model with
the shared optimizer, without locks (Hogwild). It reserves each step from a global counter, so that all workers
together take exactly the number of steps asked for, and reports once per rollout through a queue.

The loss of a rollout is summed over its steps, as in universe-starter-agent:
``-sum(log pi(a_t|s_t) * (R_t - V(s_t))) + value_coef * sum(0.5 * (R_t - V(s_t))^2) - entropy_coef * sum(H_t)``.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saferl.agents.a3c.config import A3CConfig
from saferl.agents.a3c.network import ActorCritic
from saferl.agents.a3c.optimizer import SharedAdam
from saferl.errors import SaferlError
from saferl.oversight.metrics import TALLIED

EnvFactory = Callable[[int], gym.Env]


def _reserve_step(counter: Any, target: int) -> bool:
    """Take one step from the global budget; False once all workers together have taken ``target``."""
    with counter.get_lock():
        if counter.value >= target:
            return False
        counter.value += 1
        return True


def outcome_tuple(info: dict[str, Any]) -> tuple[Any, ...]:
    """The oversight outcome of one step, as a compact tuple in the order of :data:`TALLIED`."""
    if "catastrophe" not in info or "blocked" not in info:
        raise SaferlError("the env's info lacks the oversight keys ('catastrophe', 'blocked', ...): build the "
                          "workers' envs with saferl.oversight.envs.make_agent_env")
    return tuple(info.get(key, 0) for key in TALLIED)


def n_step_returns(rewards: list[float], bootstrap: float, gamma: float) -> torch.Tensor:
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


def worker_process(rank: int, seed: int, config: A3CConfig, env_factory: EnvFactory, shared: ActorCritic,
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
            outcomes.append(outcome_tuple(info))
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
        returns = n_step_returns(rewards, bootstrap, config.gamma)

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
