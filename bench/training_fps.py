"""Training fps of DQN, PPO and A2C with a Blocker overseeing against without oversight, side by side.

For each algorithm two agents learn Pong from the same seed as ``saferl experiment`` builds them
(``make_agent``, the zoo's hyperparameters with a smaller replay buffer and an early start of
learning; A2C as ``experiments/pong_learning.yml`` runs it: 8 envs on the ``shared`` backend): one
unoverseen (``none``: no frames, no review), one overseen by the Blocker in ``--blocker DIR`` (mode
replace: one batched review a step, a safe action and a counterfactual per block). Torch runs on one
thread unless ``--threads`` says otherwise: on a busy machine threads that wait for each other slow
both agents alike, and the run by much. After a warm-up (DQN: until learning starts; PPO: one rollout
and its update; A2C: 4 rollouts and updates) they learn a few hundred steps (DQN), a rollout and its
update (PPO) or 20 rollouts and updates (A2C) at a time in interleaved rounds; the medians of steps per
second (env steps, action selection and gradient updates, all counted) are reported with the
overseen/unoverseen ratio, and beside it the ratio of CPU time per step (this process and its env
workers), which the load of a busy machine moves less. The acting figures count only the time in
SB3's ``collect_rollouts`` (env steps, the policy, oversight; no gradient updates): the ratio that
oversight would leave a learner whose updates cost nothing (a fast GPU). Beside them, the CPU time per
step the learner's own process (all its threads, not its env workers) spends acting: what oversight
costs the process the learner waits on. Where the env workers have cores of their own, the acting fps
ratio follows it; on a machine whose cores are all busy, the fps ratios follow the CPU time of all
processes (``*_by_cpu``).
``blocker_training_fps_ratio`` (``blocker_training_cpu_ratio``, ``blocker_acting_fps_ratio``,
``blocker_acting_learner_cpu_ratio``) is the lowest of the measured algorithms' ratios;
``a2c_training_fps_ratio`` (``a2c_training_cpu_ratio``, ``a2c_acting_fps_ratio``,
``a2c_acting_learner_cpu_ratio``) is A2C's, the learner of ``experiments/pong_learning.yml`` (target >= 0.95
training and acting).

    python bench/training_fps.py --blocker DIR [--game pong] [--algorithms dqn,ppo,a2c] [--json]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from sidebyside import bench_parser, interleaved, print_json, rate, ratio

A2C_ENVS = 8
HEADLINES = {"training_fps": "blocker_vs_none", "training_cpu": "blocker_vs_none_by_cpu",
             "acting_fps": "acting_blocker_vs_none", "acting_learner_cpu": "acting_blocker_vs_none_by_learner_cpu"}
"""The headline figures (``blocker_<figure>_ratio``, and ``a2c_<figure>_ratio`` when A2C is measured) and the
per-algorithm key each is read from."""
A2C_HEADLINES = tuple(f"a2c_{figure}_ratio" for figure in HEADLINES)


def sizes(algorithm: str, scale: float) -> tuple[dict[str, Any], int, int]:
    """Hyperparameter overrides, warm-up steps and measured steps per round, at ``scale`` (1: DQN learns from
    step 500 with a 5,000-step buffer and is timed 400 steps a round; PPO is timed one rollout of 8 envs x
    128 steps and its update a round, after one as warm-up; A2C, with the settings of
    ``experiments/pong_learning.yml`` (8 envs, ``shared`` backend, the zoo's 5 steps a rollout), is timed 20
    rollouts and their updates a round, after 4 as warm-up)."""
    if algorithm == "dqn":
        starts = max(8, int(500 * scale))
        return {"buffer_size": 5000, "learning_starts": starts}, starts + 100, max(8, int(400 * scale))
    if algorithm == "a2c":
        rollout = A2C_ENVS * 5
        return {"n_envs": A2C_ENVS, "backend": "shared"}, rollout * max(1, round(4 * scale)), rollout * max(1, round(20 * scale))
    n_steps = max(16, int(128 * scale))
    rollout = 8 * n_steps
    return {"n_steps": n_steps, "batch_size": min(256, rollout)}, rollout, rollout


class ActingClock:
    """The seconds an SB3 model spends in ``collect_rollouts``: acting (env steps, the policy, oversight), not
    updating; ``learner_cpu``: the CPU seconds this process (all its threads, not its env workers) spent there."""

    def __init__(self, model: Any) -> None:
        self.seconds, self.learner_cpu, self._collect = 0.0, 0.0, model.collect_rollouts
        model.collect_rollouts = self._timed

    def _timed(self, *args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return self._collect(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.learner_cpu += time.process_time() - cpu


def build_agent(algorithm: str, game: Any, overseer: str, scale: float = 1.0, seed: int = 0) -> Any:
    """An SB3 agent as the experiment pipeline makes it, on CPU, warmed up."""
    from saferl.agents import OversightSpec, make_agent

    hyperparams, warmup, _ = sizes(algorithm, scale)
    agent = make_agent(algorithm, game, total_steps=10**6, spec=OversightSpec(overseer=overseer), seed=seed,
                       device="cpu", hyperparams=hyperparams)
    agent.learn_until(warmup)
    return agent


def fps(agent: Any, steps: int, cpu: list[float] | None = None) -> float:
    """Agent steps per second while ``agent`` learns about ``steps`` more steps (CPU us per step to ``cpu``)."""
    first = agent.num_timesteps

    def work() -> int:
        agent.learn_until(first + steps)
        return agent.num_timesteps - first

    return rate(work, cpu)


def measure(blocker: str, game_name: str = "pong", algorithms: tuple[str, ...] = ("dqn", "ppo", "a2c"),
            rounds: int = 3, scale: float = 1.0, threads: int = 1,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Training fps with and without the Blocker for each algorithm, side by side, on ``threads`` torch threads."""
    import torch

    from saferl.games import get_game

    game = get_game(game_name)
    torch.set_num_threads(threads)
    result: dict[str, Any] = {"game": game.name, "blocker": blocker, "rounds": rounds, "torch_threads": threads}
    for algorithm in algorithms:
        steps = sizes(algorithm, scale)[2]
        agents = {name: build_agent(algorithm, game, overseer, scale)
                  for name, overseer in (("none", "none"), ("blocker", f"blocker:{blocker}"))}
        cpu: dict[str, list[float]] = {name: [] for name in agents}
        acting: dict[str, list[float]] = {name: [] for name in agents}
        learner: dict[str, list[float]] = {name: [] for name in agents}
        clocks = {name: ActingClock(agent.model) for name, agent in agents.items()}

        def measure_round(name: str, agents=agents, clocks=clocks, steps=steps, cpu=cpu, acting=acting,
                          learner=learner) -> float:
            agent, clock = agents[name], clocks[name]
            first, seconds, learner_cpu = agent.num_timesteps, clock.seconds, clock.learner_cpu
            result = fps(agent, steps, cpu[name])
            done = agent.num_timesteps - first
            acting[name].append(done / (clock.seconds - seconds))
            learner[name].append((clock.learner_cpu - learner_cpu) / done * 1e6)
            return result

        try:
            medians = interleaved({name: (lambda r, n=name: measure_round(n)) for name in agents}, rounds)
            totals = agents["blocker"].counters.totals
            blocks, false_positives = totals["blocks"], totals["false_positives"]
        finally:
            for agent in agents.values():
                agent.close()
        share = ratio(medians["blocker"], medians["none"])
        cpu_us = {name: statistics.median(values) for name, values in cpu.items()}
        cpu_share = ratio(cpu_us["none"], cpu_us["blocker"])
        acting_fps = {name: statistics.median(values) for name, values in acting.items()}
        acting_share = ratio(acting_fps["blocker"], acting_fps["none"])
        learner_us = {name: statistics.median(values) for name, values in learner.items()}
        learner_share = ratio(learner_us["none"], learner_us["blocker"])
        result.update({f"{algorithm}_steps": steps, f"{algorithm}_none_fps": round(medians["none"], 1),
                       f"{algorithm}_blocker_fps": round(medians["blocker"], 1),
                       f"{algorithm}_blocker_vs_none": share, f"{algorithm}_blocker_blocks": int(blocks),
                       f"{algorithm}_blocker_false_positives": int(false_positives),
                       f"{algorithm}_none_cpu_us_per_step": round(cpu_us["none"], 1),
                       f"{algorithm}_blocker_cpu_us_per_step": round(cpu_us["blocker"], 1),
                       f"{algorithm}_blocker_vs_none_by_cpu": cpu_share,
                       f"{algorithm}_acting_none_fps": round(acting_fps["none"], 1),
                       f"{algorithm}_acting_blocker_fps": round(acting_fps["blocker"], 1),
                       f"{algorithm}_acting_blocker_vs_none": acting_share,
                       f"{algorithm}_acting_none_learner_cpu_us_per_step": round(learner_us["none"], 1),
                       f"{algorithm}_acting_blocker_learner_cpu_us_per_step": round(learner_us["blocker"], 1),
                       f"{algorithm}_acting_blocker_vs_none_by_learner_cpu": learner_share})
        log(f"{algorithm} training: {medians['none']:7,.1f} fps unoverseen, {medians['blocker']:7,.1f} fps with the "
            f"Blocker ({blocks} blocks, {false_positives} not needed)   x{share:.3f}; CPU per step "
            f"{cpu_us['none']:,.0f} / {cpu_us['blocker']:,.0f} us   x{cpu_share:.3f}; acting only "
            f"{acting_fps['none']:,.0f} / {acting_fps['blocker']:,.0f} fps   x{acting_share:.3f}, the learner's process "
            f"{learner_us['none']:,.0f} / {learner_us['blocker']:,.0f} CPU us a step   x{learner_share:.3f}")
    for figure, key in HEADLINES.items():
        result[f"blocker_{figure}_ratio"] = min(result[f"{a}_{key}"] for a in algorithms)
        if "a2c" in algorithms:
            result[f"a2c_{figure}_ratio"] = result[f"a2c_{key}"]
    log(f"Blocker-overseen training fps over unoverseen (lowest of {', '.join(algorithms)}): "
        f"x{result['blocker_training_fps_ratio']} (target >= 0.9); by CPU per step: x{result['blocker_training_cpu_ratio']}; "
        f"acting only: x{result['blocker_acting_fps_ratio']}")
    if "a2c" in algorithms:
        log(f"A2C (8 envs, shared backend): x{result['a2c_training_fps_ratio']} training, "
            f"x{result['a2c_acting_fps_ratio']} acting only (target >= 0.95 both)")
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--blocker", required=True, help="a trained Blocker folder (bench/blocker_training.py --out)")
    parser.add_argument("--algorithms", default="dqn,ppo,a2c", help="comma-separated: dqn, ppo, a2c")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the steps per measurement (and warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a busy machine)")
    args = parser.parse_args()
    print_json(measure(args.blocker, args.game, tuple(args.algorithms.split(",")), args.rounds, args.scale,
                       args.threads), args.json)


if __name__ == "__main__":
    main()
