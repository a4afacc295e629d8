"""Steps per second of the overseen env with each overseer, against the bare env, measured side by side.

Each configuration runs a random policy for ``--steps`` agent steps; the rounds are interleaved so
machine noise hits all alike, and the median of the rounds is reported with its ratio to the bare
ALE v5 env. Run: ``python bench/oversight_overhead.py --game pong [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from saferl.env.ale import make_ale_env
from saferl.games import get_game
from saferl.oversight.envs import make_overseen_env
from saferl.registry import make_overseer


def steps_per_second(make: Callable[[], gym.Env], steps: int, seed: int) -> float:
    """Random-policy agent steps per second of the env that ``make`` builds."""
    env = make()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(env.action_space.n, size=steps)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="pong")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    game = get_game(args.game)
    configs: dict[str, Callable[[], gym.Env]] = {
        "ale_v5_bare": lambda: gym.make(game.env_id),
        "saferl_bare": lambda: make_ale_env(game),
        **{
            f"overseen_{name}": (lambda name=name: make_overseen_env(game, make_overseer(name, seed=0)))
            for name in ("none", "scripted", "lookahead")
        },
    }
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name, make in configs.items():
            samples[name].append(steps_per_second(make, args.steps, seed=round_))
    result = {"game": game.name, "steps": args.steps, "rounds": args.rounds}
    reference = statistics.median(samples["ale_v5_bare"])
    for name, values in samples.items():
        median = statistics.median(values)
        result[f"{name}_steps_per_second"] = round(median, 1)
        result[f"{name}_vs_ale_v5"] = round(median / reference, 3)
        print(f"{name:<20} {median:9,.0f} steps/s   x{median / reference:.3f} of bare ALE v5")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
