"""Blocker training throughput on CPU (labels per second), with 1 and with 2 torch threads side by side.

Labels come from random play in 8 envs under the scripted overseer (every decision is a label, with
its RGB frame). The paper's CNN for the game is then trained on up to 1,600 examples of the training
episodes for ``--epochs`` epochs per measurement, one torch thread against two in interleaved rounds;
the throughput is training examples times epochs over the seconds ``train_net`` took (its per-epoch
validation pass included). Loading (decoding and preprocessing the stored frames) is timed once.
With ``--out DIR`` a Blocker is also fitted on all the labels (up to 15 epochs with early stopping,
thresholded for zero false negatives with a 0.01 margin) and saved there, for the other benchmarks
(``bench/run.py`` does this).

    python bench/blocker_training.py --game pong [--labels 6000] [--epochs 1] [--out DIR] [--json]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sidebyside import bench_parser, interleaved, print_json, ratio

N_ENVS = 8
FIT_EPOCHS = 15  # at most, with early stopping
TIMED_LABELS = 1600  # training examples per throughput measurement


def record_labels(game: Any, folder: Path, labels: int, seed: int = 0) -> Path:
    """About ``labels`` labels of random play under the scripted overseer, in a label store at ``folder``."""
    from saferl.env.ale import game_action_names
    from saferl.labels.store import LabelStore
    from saferl.oversight import ScriptedOverseer
    from saferl.oversight.envs import make_vec_env

    with LabelStore.create(folder, game.name, game_action_names(game)) as store:
        venv = make_vec_env(game, N_ENVS, overseer=ScriptedOverseer(seed=seed), label_store=store, seed=seed,
                            max_num_frames_per_episode=1600)  # short episodes: enough of them to split
        try:
            venv.reset()
            rng = np.random.default_rng(seed)
            for _ in range(-(-labels // N_ENVS)):
                venv.step(rng.integers(venv.action_space.n, size=N_ENVS))
        finally:
            venv.close()
    return folder


def labels_per_second(data: Any, split: Any, epochs: int, threads: int) -> float:
    """Training examples times epochs per second of ``train_net`` with ``threads`` torch threads, on the first
    :data:`TIMED_LABELS` training examples."""
    import torch

    from saferl.blocker import TrainConfig, train_net

    before = torch.get_num_threads()
    train = split.train[:TIMED_LABELS]
    try:
        config = TrainConfig(epochs=epochs, patience=epochs, threads=threads, device="cpu", progress=False)
        trained = train_net(data, train, split.val, config=config)
    finally:
        torch.set_num_threads(before)
    return len(train) * len(trained.history) / trained.seconds


def measure(game_name: str = "pong", labels: int = 6000, epochs: int = 1, rounds: int = 3,
            out: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Record labels, time loading and training side by side; optionally fit and save a Blocker to ``out``."""
    from saferl.blocker import TrainConfig, fit_blocker, load_labels, split_by_episode
    from saferl.games import get_game

    game = get_game(game_name)
    with tempfile.TemporaryDirectory() as tmp:
        store = record_labels(game, Path(tmp) / "labels", labels)
        start = time.perf_counter()
        data = load_labels([store], game.name)
        load_rate = len(data) / (time.perf_counter() - start)
        split = split_by_episode(data, seed=0)
        medians = interleaved({f"{k}_thread{'s' if k > 1 else ''}": (lambda r, k=k: labels_per_second(data, split,
                                                                                                     epochs, k))
                               for k in (1, 2)}, rounds)
        if out:
            fit = fit_blocker([store], game.name, out, config=TrainConfig(epochs=FIT_EPOCHS, patience=3, threads=1,
                                                                          device="cpu", progress=False), margin=0.01)
    result: dict[str, Any] = {"game": game.name, "labels": len(data), "blocks": int(data.blocked.sum()),
                              "train_labels": len(split.train), "epochs": epochs, "rounds": rounds,
                              "load_labels_per_second": round(load_rate, 1)}
    log(f"load labels (decode + preprocess)  {load_rate:8,.0f} labels/s")
    for name, median in medians.items():
        result[f"train_{name}_labels_per_second"] = round(median, 1)
        log(f"train, {name:<10}                {median:8,.0f} labels/s")
    result["train_2_threads_vs_1"] = ratio(medians["2_threads"], medians["1_thread"])
    log(f"2 torch threads vs 1: x{result['train_2_threads_vs_1']}")
    if out:
        result.update(blocker=str(out), blocker_test_false_positive_rate=round(fit.test.false_positive_rate, 4),
                      blocker_test_false_negatives=int(fit.test.false_negatives))
        log(f"fitted Blocker: {fit.test.false_positive_rate:.1%} false positives, {fit.test.false_negatives} false "
            f"negatives on its test episodes")
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--labels", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per measurement")
    parser.add_argument("--out", help="also fit a Blocker on the labels and save it here")
    args = parser.parse_args()
    print_json(measure(args.game, args.labels, args.epochs, args.rounds, args.out), args.json)


if __name__ == "__main__":
    main()
