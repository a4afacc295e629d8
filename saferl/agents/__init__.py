"""Agents that learn under oversight: stable-baselines3's DQN, A2C and PPO, and the paper's A3C.

Hyperparameters live in ``hyperparams.yml`` (rl-baselines3-zoo's Atari values as the start). Each
agent learns from its own proposed action and the penalty when blocked, on cuda when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saferl.agents.base import AGENTS, Agent, OversightSpec, label_stores, load_hyperparams
from saferl.games import Game


def make_agent(name: str, game: Game, total_steps: int, spec: OversightSpec, seed: int = 0, device: str = "auto",
               hyperparams: dict[str, Any] | None = None, with_frame: bool = False,
               log_dir: str | Path | None = None, env_kwargs: dict[str, Any] | None = None) -> Agent:
    """The agent ``name`` (dqn, a2c, ppo, a3c) for ``game``, overseen as ``spec`` says.

    :param total_steps: the run's length in agent steps (schedules span it).
    :param hyperparams: overrides of ``hyperparams.yml``.
    :param with_frame: envs snapshot RGB frames from the start (for a Blocker taking over later).
    :param env_kwargs: ALE settings over the game's (e.g. ``max_num_frames_per_episode``).
    """
    params = load_hyperparams(name, game.name, hyperparams)
    if name == "a3c":
        from saferl.agents.a3c_agent import A3CAgent

        return A3CAgent(game, params, spec, seed=seed, device=device, log_dir=log_dir, env_kwargs=env_kwargs)
    from saferl.agents.sb3_agent import SB3Agent

    return SB3Agent(name, game, params, total_steps, spec, seed=seed, device=device, with_frame=with_frame,
                    log_dir=log_dir, env_kwargs=env_kwargs)


def discard_resume_state(folder: str | Path) -> None:
    """Delete, from an agent checkpoint ``folder`` (searched recursively), what only resuming needs (SB3's replay
    buffer), keeping the weights: a finished run's checkpoint stays loadable and becomes smaller."""
    from saferl.agents.sb3_agent import REPLAY_FILE

    for replay in Path(folder).rglob(REPLAY_FILE):
        replay.unlink()


__all__ = ["AGENTS", "Agent", "OversightSpec", "discard_resume_state", "label_stores", "load_hyperparams",
           "make_agent"]
