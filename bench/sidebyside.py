"""Side-by-side measurement for the benchmarks: configurations interleaved in rounds, medians, ratios.

On a shared machine absolute speeds drift with the load; configurations measured in the same
rounds (the order reversed every other round) meet the same load, so their ratios hold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def bench_parser(doc: str, rounds: int = 3) -> argparse.ArgumentParser:
    """A benchmark's command line with ``--game``, ``--rounds`` and ``--json`` (the figures as one JSON object last)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--game", default="pong")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds (medians are reported)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object last")
    return parser


def print_figures(result: dict[str, Any], wanted: bool) -> None:
    """Print a line per figure, then (when ``wanted``) all of them as one JSON line."""
    for key, value in result.items():
        print(f"{key:30} {value}")
    print_json(result, wanted)


def print_json(result: dict[str, Any], wanted: bool) -> None:
    """Print ``result`` as one JSON line when ``wanted``."""
    if wanted:
        print(json.dumps(result))


def interleaved(measures: dict[str, Callable[[int], float]], rounds: int) -> dict[str, float]:
    """The median over ``rounds`` of each measurement (called with the round number), rounds interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for round_ in range(rounds):
        order = list(measures) if round_ % 2 == 0 else list(reversed(measures))
        for name in order:
            samples[name].append(measures[name](round_))
    return {name: statistics.median(values) for name, values in samples.items()}


def rate(work: Callable[[], int], cpu: list[float] | None = None) -> float:
    """Units per second of ``work`` (it returns how many units it did); appends the CPU microseconds per unit
    of this process, its threads and its descendants (workers) to ``cpu``: what the work costs, whatever
    share of the cores a busy machine gives it."""
    used, start = tree_cpu_seconds(), time.perf_counter()
    units = work()
    elapsed = time.perf_counter() - start
    if cpu is not None:
        cpu.append((tree_cpu_seconds() - used) / max(units, 1) * 1e6)
    return units / elapsed


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` rounded to 3 places (NaN when the denominator is 0)."""
    return round(numerator / denominator, 3) if denominator else float("nan")


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process, its threads and all its descendants (Linux /proc)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(used.get(pid, 0.0) for pid in tree)


def untrained_blocker(game: Any, members: int = 3, memory: int = 8000) -> Any:
    """A Blocker of the shape ``saferl train-blocker`` deploys for ``game`` (``members`` untrained CNNs of the
    game's size, any of which blocks, and a novelty memory of ``memory`` views each) that never blocks: the compute
    of a trained one's review, with no block to cost the wrappers a counterfactual."""
    import numpy as np

    from saferl.blocker import Ensemble, new_blocker
    from saferl.blocker.novelty import Novelty
    from saferl.env.ale import game_action_names

    names = game_action_names(game)
    nets = [new_blocker(game.name, names, seed=k) for k in range(members)]
    units = nets[0].net.head[0].out_features
    rng = np.random.default_rng(0)
    views = [rng.normal(size=(memory, units)).astype(np.float32) for _ in nets]
    return Ensemble(nets, float("inf"), rule="max", novelty=Novelty(views, [1e9] * members))


def load_or_untrained_blocker(game: Any, folder: str | None) -> Any:
    """The Blocker saved in ``folder`` (an ensemble or a single one), else :func:`untrained_blocker`."""
    from saferl.blocker.ensemble import load_scorer

    return load_scorer(folder, game.name) if folder else untrained_blocker(game)
