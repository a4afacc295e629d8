"""The paper's A3C (:mod:`saferl.agents.a3c`) as a saferl agent: worker processes, each with its own overseen env.

Oversight is handed over per phase by giving the workers a new env factory: each worker builds its env,
overseer and (for a labelling phase) its own label store, ``label_dir/worker-<rank>``, since a store
cannot be shared across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from saferl.agents.a3c import A3C, A3CConfig
from saferl.agents.base import OversightSpec
from saferl.games import Game, get_game
from saferl.oversight.envs import make_agent_env
from saferl.oversight.metrics import SafetyCounters
from saferl.registry import make_overseer

A3C_KEYS = {name for name in A3CConfig.__dataclass_fields__} - {"seed", "device"}


class _ClosesStore(gym.Wrapper):
    """Closes the worker's label store with its env."""

    def __init__(self, env: gym.Env, store: Any) -> None:
        super().__init__(env)
        self.store = store

    def close(self) -> None:
        super().close()
        self.store.close()


@dataclass(frozen=True)
class WorkerEnvFactory:
    """Builds worker ``rank``'s overseen env (picklable: it travels to the worker processes)."""

    game: str
    spec: OversightSpec
    seed: int = 0
    frame_stack: int = 4
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, rank: int) -> gym.Env:
        from saferl.env.ale import game_action_names
        from saferl.labels.store import LabelStore

        game = get_game(self.game)
        overseer = make_overseer(self.spec.overseer, seed=self.seed + rank, game=game.name, **self.spec.options)
        store = None
        if self.spec.label_dir is not None:
            store = LabelStore.open_or_create(Path(self.spec.label_dir) / f"worker-{rank}", game.name,
                                              game_action_names(game))
            if hasattr(overseer, "label_store"):  # a resumed run's deferring overseer recalls its labels
                overseer.label_store = store
        env = make_agent_env(game, overseer, self.spec.mode, self.spec.penalty, store, seed=self.seed + rank,
                             frame_stack=self.frame_stack, first_episode=store.next_episode() if store else 0,
                             **self.env_kwargs)
        return _ClosesStore(env, store) if store is not None else env


class A3CAgent:
    """A3C learning in ``n_workers`` overseen envs of ``game``.

    :param hyperparams: ``n_workers``, ``frame_stack`` and the other :class:`~saferl.agents.a3c.A3CConfig` fields.
    """

    def __init__(self, game: Game, hyperparams: dict[str, Any], spec: OversightSpec, seed: int = 0,
                 device: str = "auto", log_dir: str | Path | None = None,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        self.game, self.seed = game, seed
        self.frame_stack = int(hyperparams.get("frame_stack", 4))
        self.env_kwargs = dict(env_kwargs or {})
        config = A3CConfig(seed=seed, device=device, **{k: v for k, v in hyperparams.items() if k in A3C_KEYS})
        self.a3c = A3C(self._factory(spec), config, log_dir=str(log_dir) if log_dir is not None else None)

    def _factory(self, spec: OversightSpec) -> WorkerEnvFactory:
        return WorkerEnvFactory(self.game.name, spec, self.seed, self.frame_stack, self.env_kwargs)

    @property
    def num_timesteps(self) -> int:
        return int(self.a3c.num_timesteps)

    @property
    def counters(self) -> SafetyCounters:
        return self.a3c.counters

    def overseer_stats(self) -> dict[str, Any]:
        return {}  # each worker process has its own overseer

    def set_oversight(self, spec: OversightSpec) -> None:
        self.a3c.env_factory = self._factory(spec)

    def learn_until(self, step: int, on_episode: Callable[[dict[str, Any]], None] | None = None,
                    on_progress: Callable[[int], None] | None = None) -> None:
        if step <= self.num_timesteps:
            return

        def episode(row: dict[str, Any]) -> None:
            if on_episode is not None:
                on_episode(row)
            if on_progress is not None:
                on_progress(self.num_timesteps)

        self.a3c.learn(step - self.num_timesteps, on_episode=episode)
        if on_progress is not None:
            on_progress(self.num_timesteps)

    def save(self, folder: Path) -> None:
        self.a3c.save(folder)

    def export_policy(self, folder: Path) -> None:
        """Write the agent as safetensors and JSON to ``folder`` (A3C's own files; what ``saferl evaluate`` plays)."""
        self.a3c.save(folder)

    def load(self, folder: Path) -> None:
        factory = self.a3c.env_factory
        self.a3c = A3C.load(folder, factory, log_dir=self.a3c.log_dir, device=str(self.a3c.device))

    def close(self) -> None:
        pass


__all__ = ["A3CAgent", "WorkerEnvFactory"]
