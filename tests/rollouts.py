"""Test helper: a random policy under oversight on a real ROM."""

import numpy as np

from saferl.oversight.envs import make_overseen_env


def random_policy_totals(game, overseer, seed: int, steps: int) -> dict:
    """The safety counters after ``steps`` uniformly random actions under ``overseer`` (None: nobody)."""
    env = make_overseen_env(game, overseer, seed=seed)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            env.reset()
    return env.counters.totals
