"""One oversight path: the single-env wrapper and the vectorized one share their logic, so the same actions on the
same seed give the same outcomes and the same labels, hindsight included, in every mode."""

import numpy as np
import pytest

from helpers import ACTIONS, PONG
from saferl.labels.store import LabelStore
from saferl.oversight import ScriptedOverseer
from saferl.oversight.decision import BaseOverseer, Decision
from saferl.oversight.envs import make_overseen_env, make_vec_env

KEYS = ("proposed_action", "executed_action", "blocked", "catastrophe", "catastrophe_on_block", "false_negative",
        "false_positive", "labelled", "penalty", "hindsight_labels")


class PassThenAsk(BaseOverseer):
    """Lets every action pass unasked (its decisions are not labels) and, after a catastrophe, answers the last
    ``hindsight`` decisions as the scripted rule would, one second each."""

    name = "pass-then-ask"

    def __init__(self, hindsight: int) -> None:
        self.hindsight, self.rule = hindsight, ScriptedOverseer()

    def review(self, context, action):
        return Decision(block=False, label=False)

    def review_hindsight(self, contexts, actions):
        return [Decision(block=self.rule.review(c, a).block, seconds=1.0) for c, a in zip(contexts, actions)]


def actions_into_the_zone(steps: int) -> np.ndarray:
    """Up for a while, then mostly down (LEFT moves Pong's right paddle down): catastrophes come."""
    rng = np.random.default_rng(3)
    return np.where(np.arange(steps) < 10, 2, np.where(rng.random(steps) < 0.8, 3, rng.integers(6, size=steps)))


def run_single(overseer, mode, store, steps):
    env = make_overseen_env(PONG, overseer, mode=mode, label_store=store, seed=5, with_frame=True)
    env.reset(seed=5)
    rows, rewards = [], []
    for action in actions_into_the_zone(steps):
        _, reward, terminated, truncated, info = env.step(int(action))
        rows.append(tuple(info[k] for k in KEYS))
        rewards.append(reward)
        if terminated or truncated:
            env.reset()
    totals = dict(env.counters.totals)
    env.close()
    return rows, rewards, totals


def run_vec(overseer, mode, store, steps):
    venv = make_vec_env(PONG, n_envs=1, overseer=overseer, mode=mode, label_store=store, seed=5, preprocess=False,
                        backend="dummy", with_frame=True)
    venv.reset()
    rows, rewards = [], []
    for action in actions_into_the_zone(steps):
        _, reward, _, infos = venv.step(np.array([action]))
        rows.append(tuple(infos[0][k] for k in KEYS))
        rewards.append(float(reward[0]))
    totals = dict(venv.counters.totals)
    venv.close()
    return rows, rewards, totals


@pytest.mark.parametrize("mode", ["replace", "prune", "penalty_only", "observe"])
@pytest.mark.parametrize("make_overseer", [ScriptedOverseer, lambda: PassThenAsk(hindsight=4)],
                         ids=["scripted", "hindsight"])
def test_one_env_and_a_batch_of_one_oversee_alike(tmp_path, mode, make_overseer):
    steps = 400
    with LabelStore.create(tmp_path / "single", "pong", ACTIONS) as store:
        single = run_single(make_overseer(), mode, store, steps)
        single_labels = store.arrays()
    with LabelStore.create(tmp_path / "vec", "pong", ACTIONS) as store:
        vec = run_vec(make_overseer(), mode, store, steps)
        vec_labels = store.arrays()
    assert single[2]["blocks"] + single[2]["catastrophes"] > 0, "the actions must reach the zone, or it means nothing"
    assert single[0] == vec[0]
    assert np.allclose(single[1], vec[1])
    assert single[2] == vec[2]
    for key in ("proposed_action", "executed_action", "blocked", "episode", "step"):
        assert np.array_equal(single_labels[key], vec_labels[key]), key


def test_hindsight_counts_and_stores_labels_in_the_single_env_wrapper(tmp_path):
    with LabelStore.create(tmp_path / "labels", "pong", ACTIONS) as store:
        rows, _, totals = run_single(PassThenAsk(hindsight=4), "replace", store, 400)
        stored = len(store)
    catastrophes = [row for row in rows if row[KEYS.index("catastrophe")]]
    asked = sum(row[KEYS.index("hindsight_labels")] for row in rows)
    assert catastrophes and asked >= len(catastrophes)
    assert all(row[KEYS.index("hindsight_labels")] > 0 for row in catastrophes)
    assert stored == asked == totals["labels"] and totals["human_seconds"] == asked
