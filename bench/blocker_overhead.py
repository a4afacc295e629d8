"""The Blocker's overhead per env step with 8 vectorized envs: batched vs one call per env, side by side.

Three configurations of ``make_vec_env`` (8 in-process envs, random actions) run in interleaved
rounds so machine noise hits all alike: the bare vectorized env (no overseer, no frames), the
BlockerOverseer reviewing the whole batch in one forward pass, and the same Blocker asked once per
env. The median seconds per env step of each is reported with its ratio to the bare env's. The
Blocker is loaded from ``--blocker DIR`` (it blocks as trained, and each block costs the wrappers a
counterfactual look-up), or is an untrained one of the deployed shape (3 members of the game's size and a
novelty memory) with an infinite threshold: the same compute as a trained one, never blocking, so only the
review itself is measured.

    python bench/blocker_overhead.py --game pong [--blocker DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sidebyside import load_or_untrained_blocker

from saferl.blocker import BlockerOverseer
from saferl.games import get_game
from saferl.oversight import BaseOverseer, Decision, StepContext
from saferl.oversight.envs import make_vec_env

N_ENVS = 8


class OneCallPerEnv(BaseOverseer):
    """The same Blocker asked once per env: ``review_batch`` loops over ``review`` (BaseOverseer's)."""

    name = "blocker-per-env"
    requires = frozenset({"frame"})

    def __init__(self, inner: BlockerOverseer) -> None:
        self.inner = inner

    def review(self, context: StepContext, action: int) -> Decision:
        return self.inner.review(context, action)


def seconds_per_env_step(make: Callable[[], Any], steps: int, seed: int) -> float:
    """Wall seconds per env step of ``steps`` random batched steps of the vec env ``make`` builds."""
    venv = make()
    venv.reset()
    actions = np.random.default_rng(seed).integers(venv.action_space.n, size=(steps, venv.num_envs))
    start = time.perf_counter()
    for batch in actions:
        venv.step(batch)
    elapsed = time.perf_counter() - start
    venv.close()
    return elapsed / (steps * venv.num_envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="pong")
    parser.add_argument("--blocker", help="a trained Blocker folder (default: an untrained one of the game's size)")
    parser.add_argument("--steps", type=int, default=200, help="batched steps (of 8 envs) per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    game = get_game(args.game)
    batched = BlockerOverseer(load_or_untrained_blocker(game, args.blocker))
    configs: dict[str, Callable[[], Any]] = {
        "bare": lambda: make_vec_env(game, N_ENVS, overseer=None, seed=0),
        "batched": lambda: make_vec_env(game, N_ENVS, overseer=batched, seed=0),
        "per_env": lambda: make_vec_env(game, N_ENVS, overseer=OneCallPerEnv(batched), seed=0),
    }
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name, make in configs.items():
            samples[name].append(seconds_per_env_step(make, args.steps, seed=round_))
    result: dict[str, Any] = {"game": game.name, "n_envs": N_ENVS, "steps": args.steps, "rounds": args.rounds,
                              "blocker": args.blocker or "untrained",
                              "model": batched.blocker.members[0].model_config.to_dict(),
                              "members": len(batched.blocker.members)}
    reference = statistics.median(samples["bare"])
    for name, values in samples.items():
        median = statistics.median(values)
        result[f"{name}_us_per_env_step"] = round(median * 1e6, 1)
        result[f"{name}_vs_bare"] = round(median / reference, 3)
        print(f"{name:<8} {median * 1e6:9,.1f} us per env step   x{median / reference:.3f} of the bare vec env")
    per_env, batched_median = statistics.median(samples["per_env"]), statistics.median(samples["batched"])
    result["per_env_vs_batched"] = round(per_env / batched_median, 3)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
