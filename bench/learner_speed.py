"""Which learner reaches Pong's published returns soonest on this machine: A2C and PPO with rl-baselines3-zoo's
Atari settings on 8 envs (``shared`` backend), unoverseen, learning side by side in interleaved rounds of one
update each; steps per second (env steps, acting and updates, all counted) and CPU per step, and the wall time
each would need for the zoo's published budget (10M frames, 2.5M agent steps: both reach about +20 on Pong there,
without sticky actions) at that rate.

    python bench/learner_speed.py [--rounds 3] [--json]
"""

from __future__ import annotations

import statistics
from typing import Any

from sidebyside import bench_parser, interleaved, print_json, rate

ZOO_STEPS = 2_500_000  # 10M frames at frameskip 4: where the zoo's A2C and PPO reach about +20 on Pong
N_ENVS = 8


def build(algorithm: str, seed: int = 0) -> Any:
    """An unoverseen agent as the experiment pipeline makes it (the zoo's values on 8 envs), on CPU, warmed up by
    one update."""
    from saferl.agents import OversightSpec, make_agent
    from saferl.games import get_game

    agent = make_agent(algorithm, get_game("pong"), total_steps=ZOO_STEPS, spec=OversightSpec(), seed=seed,
                       device="cpu", hyperparams={"n_envs": N_ENVS, "backend": "shared"})
    agent.learn_until(rollout(agent))
    return agent


def rollout(agent: Any) -> int:
    """Agent steps of one update: n_steps of every env."""
    return int(agent.model.n_steps) * N_ENVS


def measure(rounds: int = 3, threads: int = 1, log: Any = print) -> dict[str, Any]:
    """A2C's and PPO's training fps side by side, and their wall time to :data:`ZOO_STEPS` at it."""
    import torch

    torch.set_num_threads(threads)
    agents = {name: build(name) for name in ("a2c", "ppo")}
    cpu: dict[str, list[float]] = {name: [] for name in agents}
    # a round is about 1,024 steps of each: 16 A2C updates (8 envs x 5 steps) or one PPO update (8 x 128)
    steps = {name: max(1, 1024 // rollout(agent)) * rollout(agent) for name, agent in agents.items()}

    def work(name: str) -> float:
        agent, first = agents[name], agents[name].num_timesteps

        def run() -> int:
            agent.learn_until(first + steps[name])
            return agent.num_timesteps - first

        return rate(run, cpu[name])

    try:
        medians = interleaved({name: (lambda r, n=name: work(n)) for name in agents}, rounds)
    finally:
        for agent in agents.values():
            agent.close()
    result: dict[str, Any] = {"rounds": rounds, "n_envs": N_ENVS, "torch_threads": threads, "zoo_steps": ZOO_STEPS}
    for name, fps in medians.items():
        cpu_us = statistics.median(cpu[name])
        result.update({f"{name}_fps": round(fps, 1), f"{name}_cpu_us_per_step": round(cpu_us, 1),
                       f"{name}_hours_to_zoo_budget": round(ZOO_STEPS / fps / 3600, 1)})
        log(f"{name}: {fps:7,.1f} steps/s, {cpu_us:,.0f} CPU us a step: {ZOO_STEPS / fps / 3600:,.1f} h to 10M frames")
    result["faster"] = max(medians, key=medians.get)
    result["speed_ratio"] = round(max(medians.values()) / min(medians.values()), 3)
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a busy machine)")
    args = parser.parse_args()
    print_json(measure(args.rounds, args.threads), args.json)


if __name__ == "__main__":
    main()
