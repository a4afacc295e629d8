"""Distribution shift: roll out other policies than the one the Blocker's labels came from, under the Blocker.

A Blocker is trained on the states one policy visited while a person watched; a policy trained longer
(or differently) visits others. The policies rolled out here:

- the SB3 agents checkpointed in an experiment's run folder (``RUN_DIR/runs/<condition>/seed-<k>/checkpoint/agent``,
  rebuilt from the run's resolved hyperparameters, sampled from their policy: greedy for DQN);
- random walks that hold each random action for about 1, 4 or 16 steps (the longer holds drive
  the agent to the far ends of the game, where a uniform random policy seldom goes);
- with ``train_steps``, PPO agents with other seeds trained that long on the game's reward under the Blocker.

Each policy plays ``steps`` agent steps in envs the Blocker oversees (``replace`` mode, see
:mod:`saferl.attack.rollout`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

from saferl.agents.sb3_agent import STATE_FILE, read_metadata
from saferl.attack.rollout import MethodResult, overseen_envs, train_ppo
from saferl.errors import SaferlError
from saferl.games import Game
from saferl.schema import read_json

HOLDS = (1, 4, 16)
SB3_AGENTS = ("dqn", "a2c", "ppo")
Policy = Callable[[np.ndarray], np.ndarray]


def random_walk(n_envs: int, n_actions: int, hold: int, seed: int) -> Policy:
    """A random policy that keeps each env's action for ``hold`` steps on average (1: uniform random)."""
    rng = np.random.default_rng(seed)
    current = rng.integers(n_actions, size=n_envs)

    def act(obs: np.ndarray) -> np.ndarray:
        nonlocal current
        current = np.where(rng.random(n_envs) < 1.0 / hold, rng.integers(n_actions, size=n_envs), current)
        return current

    return act


def checkpoints(run_dir: str | os.PathLike[str], game: str) -> Iterator[tuple[str, str, dict[str, Any], Path]]:
    """(name, algorithm, hyperparameters, agent folder) of every SB3 checkpoint in an experiment's run folder."""
    root = Path(run_dir)
    config = read_json(root / "config.json", f"--policies {root}: not the run folder of saferl experiment "
                                              "(it has no config.json)")
    if not isinstance(config, dict):
        raise SaferlError(f"--policies {root}: its config.json is not saferl experiment's")
    if config.get("game") != game:
        raise SaferlError(f"--policies {root} holds {config.get('game')!r} agents, not {game!r} ones")
    found = sorted(root.glob("runs/*/seed-*/checkpoint/agent"))
    if not found:
        raise SaferlError(f"--policies {root}: no agent checkpoints (runs/<condition>/seed-<k>/checkpoint/agent)")
    for folder in found:
        algorithm = read_metadata(folder).algorithm if (folder / STATE_FILE).is_file() else config.get("agent")
        if algorithm in SB3_AGENTS:
            yield f"{folder.parts[-4]}/{folder.parts[-3]}", algorithm, dict(config.get("hyperparams", {})), folder


def checkpoint_policy(env: Any, algorithm: str, hyperparams: dict[str, Any], folder: Path) -> Policy:
    """The policy saved in an SB3 agent checkpoint (``params.pt``, loaded without pickle), for ``env``'s
    frame-stacked observations."""
    from saferl.agents.sb3_agent import load_params
    from saferl.agents.sb3_settings import ALGORITHMS, sb3_kwargs

    policy_class = ALGORITHMS[algorithm].policy_aliases[hyperparams.get("policy", "CnnPolicy")]
    policy_kwargs = sb3_kwargs(hyperparams).get("policy_kwargs", {})
    space = VecTransposeImage.transpose_space(env.observation_space)  # SB3 trained it channels-first
    policy = policy_class(space, env.action_space, lambda _: 0.0, **policy_kwargs)
    try:
        policy.load_state_dict(load_params(folder)["policy"])
    except (SaferlError, RuntimeError) as err:
        raise SaferlError(f"--policies: cannot load the agent in {folder}: {err}") from None
    policy.set_training_mode(False)
    return lambda obs: policy.predict(obs, deterministic=False)[0]


def roll_out(env: Any, act: Policy, steps: int) -> None:
    """Step the vectorized ``env`` with ``act`` for ``steps`` agent steps (all envs together)."""
    obs = env.reset()
    for _ in range(-(-steps // env.num_envs)):
        obs, _, _, _ = env.step(act(obs))


def shift(scorer: Any, game: Game, steps: int, seed: int = 0, n_envs: int = 8, max_findings: int = 20,
          policies: str | os.PathLike[str] | None = None, train_steps: int = 0,
          progress: bool = False) -> list[MethodResult]:
    """Roll out each policy (see the module docstring) for ``steps`` agent steps under the Blocker ``scorer``."""
    from saferl.env.ale import game_action_names

    results = []
    n_actions = len(game_action_names(game))
    saved = list(checkpoints(policies, game.name)) if policies else []
    for hold in HOLDS:
        recorder = overseen_envs(scorer, game, f"random walk, hold {hold}", n_envs, seed, max_findings,
                                 preprocess=False, steps=steps, progress=progress)
        roll_out(recorder, random_walk(n_envs, n_actions, hold, seed), steps)
        results.append(recorder.result("shift"))
        recorder.close()
    for name, algorithm, hyperparams, folder in saved:
        recorder = overseen_envs(scorer, game, f"checkpoint {name} ({algorithm})", n_envs, seed, max_findings,
                                 steps=steps, progress=progress)
        env = VecFrameStack(recorder, int(hyperparams.get("frame_stack", 4)))
        roll_out(env, checkpoint_policy(env, algorithm, hyperparams, folder), steps)
        results.append(recorder.result("shift"))
        recorder.close()
    for k in range(2 if train_steps else 0):
        trainer = overseen_envs(scorer, game, f"training PPO seed {seed + 1 + k}", n_envs, seed + 1 + k, 0,
                                steps=train_steps, progress=progress)
        model = train_ppo(VecFrameStack(trainer, 4), game, seed + 1 + k, train_steps)
        trainer.close()
        recorder = overseen_envs(scorer, game, f"PPO seed {seed + 1 + k}, {train_steps:,} steps", n_envs, seed,
                                 max_findings, steps=steps, progress=progress)
        roll_out(VecFrameStack(recorder, 4), lambda obs, model=model: model.predict(obs, deterministic=False)[0],
                 steps)
        results.append(recorder.result("shift"))
        recorder.close()
    return results
