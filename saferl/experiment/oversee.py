"""``saferl oversee`` as a library function: a scripted or random policy plays a game under an overseer for a
number of steps, its decisions go to a label store, and the safety figures come back as a summary."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from saferl.errors import SaferlError
from saferl.files import writable_dir


def oversee(game: str, overseer: str = "scripted", policy: str = "random", mode: str = "replace",
            penalty: float = -1.0, steps: int = 5000, seed: int = 0, out: str | None = None,
            overseer_options: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``policy`` on ``game`` for ``steps`` agent steps under ``overseer`` and return the safety figures.

    :param overseer: a registered overseer name (``none``, ``scripted``, ``human``, ``blocker:DIR``, ...).
    :param policy: the acting policy (see :data:`saferl.env.policies.POLICY_HELP`).
    :param mode: what a block does (:class:`~saferl.oversight.intervention.Mode`).
    :param penalty: the reward added to a blocked step.
    :param out: a label store folder for the decisions (created; appended to if it exists: the summary's
        ``store_labels`` counts every label there); None: none kept.
    :param overseer_options: keyword arguments of the overseer (the human window's ``pace``, ``scale``, ``blocker``).
    :param progress: show a progress bar.
    :returns: the counted figures (steps, catastrophes, blocks, false negatives and positives, labels,
        episodes, steps per second; for the human overseer also the human seconds and whether the person quit).
    :raises SaferlError: a bad argument, before any work.
    """
    from tqdm import tqdm

    from saferl.env.ale import action_names, game_action_names
    from saferl.env.policies import make_policy
    from saferl.errors import OversightQuit
    from saferl.games import get_game
    from saferl.oversight.envs import make_overseen_env
    from saferl.oversight.intervention import Mode
    from saferl.oversight.metrics import block_rate
    from saferl.registry import make_overseer

    game_ = get_game(game)
    Mode.parse(mode)
    make_policy(policy, game_action_names(game_), game=game_.name)  # a bad policy fails before any work
    if steps < 1:
        raise SaferlError(f"--steps must be at least 1, not {steps}")
    reviewer = make_overseer(overseer, seed=seed, game=game_.name, **(overseer_options or {}))
    store = None
    if out is not None:
        from saferl.labels.store import LabelStore

        folder = writable_dir(out, "--out")
        if reviewer is not None:
            store = LabelStore.open_or_create(folder, game=game_.name, action_names=game_action_names(game_))
    human = overseer == "human"
    if human:
        reviewer.label_store = store  # undo relabels the person's stored blocks
    earlier = len(store) if store is not None else 0  # labels of earlier runs into the same folder
    first_episode = int(store.arrays()["episode"].max()) + 1 if earlier else 0
    env = make_overseen_env(
        game_, reviewer, mode=mode, penalty=penalty, label_store=store, seed=seed, first_episode=first_episode
    )
    _, info = env.reset(seed=seed)
    act = make_policy(policy, action_names(env), seed=seed, game=game_.name)
    start = time.perf_counter()
    quit_ = False
    try:
        for _ in tqdm(range(steps), desc=f"oversee {game_.name}", unit="step", disable=not progress):
            _, _, terminated, truncated, info = env.step(act(info.get("game_state")))
            if terminated or truncated:
                _, info = env.reset()
    except OversightQuit:
        quit_ = True  # the person quit the window: what was decided is stored, the summary follows
    finally:
        elapsed = time.perf_counter() - start
        counters = env.counters
        env.close()
        if store is not None:
            store.close()
    totals = counters.totals
    summary = {
        "game": game_.name,
        "overseer": overseer,
        "mode": mode,
        "policy": policy,
        "steps": int(totals["steps"]),
        "catastrophes": int(totals["catastrophes"]),
        "catastrophes_on_blocks": int(totals["catastrophes_on_blocks"]),
        "blocks": int(totals["blocks"]),
        "block_rate": block_rate(totals),
        "false_negatives": int(totals["false_negatives"]),
        "false_positives": int(totals["false_positives"]),
        "labels": int(totals["labels"]),
        "episodes": len(counters.episodes),
        "mean_return": (round(float(np.mean([row["game_return"] for row in counters.episodes])), 2)
                        if counters.episodes else None),
        "steps_per_second": round(totals["steps"] / elapsed, 1),
    }
    if store is not None:  # appended to what earlier runs stored there: a run repeated with the same seed repeats them
        summary.update(store=str(out), store_labels=earlier + int(totals["labels"]))
    if human:
        summary.update(human_seconds=round(float(totals["human_seconds"]), 1), quit=quit_)
    return summary
