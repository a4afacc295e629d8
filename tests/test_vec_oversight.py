"""The batched oversight wrapper over SB3 VecEnvs."""

from dataclasses import fields

import numpy as np
import pytest

from saferl.blocker import BlockerOverseer, new_blocker
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.oversight import BaseOverseer, Decision, LookaheadOverseer, ScriptedOverseer
from saferl.oversight.envs import make_vec_env
from saferl.oversight.metrics import Outcome

PONG = get_game("pong")
ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
OUTCOME = [field.name for field in fields(Outcome)]


class CountingOverseer(ScriptedOverseer):
    """The scripted rule, counting how often it is asked for a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0
        self.batch_sizes: list[int] = []

    def review_batch(self, contexts, actions):
        self.batches += 1
        self.batch_sizes.append(len(contexts))
        return super().review_batch(contexts, actions)


@pytest.mark.slow
def test_one_review_per_batch_and_no_catastrophe_through():
    overseer = CountingOverseer()
    venv = make_vec_env(PONG, n_envs=4, overseer=overseer, seed=3)
    venv.reset()
    rng = np.random.default_rng(3)
    blocked = catastrophes = 0
    for _ in range(400):
        _, rewards, _, infos = venv.step(rng.integers(6, size=4))
        blocked += sum(info["blocked"] for info in infos)
        catastrophes += sum(info["catastrophe"] for info in infos)
        for reward, info in zip(rewards, infos):
            if info["blocked"]:
                assert reward <= -1.0
    assert overseer.batches == 400 and set(overseer.batch_sizes) == {4}
    assert blocked > 0 and catastrophes == 0
    assert venv.counters.totals["blocks"] == blocked
    assert venv.counters.totals["steps"] == 1600


@pytest.mark.slow
def test_without_oversight_the_same_envs_have_catastrophes():
    venv = make_vec_env(PONG, n_envs=4, overseer=None, seed=3)
    venv.reset()
    rng = np.random.default_rng(3)
    for _ in range(400):
        venv.step(rng.integers(6, size=4))
    assert venv.counters.totals["catastrophes"] > 0
    assert venv.counters.totals["false_negatives"] == venv.counters.totals["catastrophes"]


def test_episode_ids_are_unique_across_envs():
    venv = make_vec_env(PONG, n_envs=2, overseer=ScriptedOverseer(), seed=0)
    venv.reset()
    first = [context.episode for context in venv.contexts]
    assert len(set(first)) == 2


def test_subprocess_envs_work_for_the_scripted_rule_and_refuse_lookahead():
    venv = make_vec_env(PONG, n_envs=2, overseer=ScriptedOverseer(), seed=1, backend="subproc")
    try:
        venv.reset()
        for _ in range(50):
            _, _, _, infos = venv.step(np.array([3, 3]))
        assert venv.counters.totals["steps"] == 100
        assert venv.counters.totals["blocks"] > 0
    finally:
        venv.close()
    with pytest.raises(SaferlError, match="DummyVecEnv"):
        make_vec_env(PONG, n_envs=2, overseer=LookaheadOverseer(), seed=1, backend="subproc")


def test_lookahead_runs_in_process_vec_envs():
    venv = make_vec_env(PONG, n_envs=2, overseer=LookaheadOverseer(), seed=4)
    venv.reset()
    for _ in range(150):
        venv.step(np.array([3, 3]))
    assert venv.counters.totals["catastrophes"] == 0
    assert venv.counters.totals["blocks"] > 0


class DownReplacer(BaseOverseer):
    """Blocks every proposed action and runs DOWN instead: a replacement that drives the paddle into the zone."""

    name = "down-replacer"

    def review(self, context, action):
        return Decision(block=True, safe_action=3)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dummy", "shared"])
def test_catastrophes_a_replacement_ran_into_are_counted_as_such_not_as_false_negatives(backend):
    venv = make_vec_env(PONG, n_envs=2, overseer=DownReplacer(), seed=5, backend=backend)
    venv.reset()
    for _ in range(60):
        _, _, _, infos = venv.step(np.array([2, 4]))  # the agent asks for UP; every step runs DOWN
    totals = venv.counters.summary()
    venv.close()
    assert totals["catastrophes"] > 0 and totals["catastrophes_on_blocks"] == totals["catastrophes"]
    assert totals["false_negatives"] == 0 and totals["block_rate"] == 1.0
    scripted = make_vec_env(PONG, n_envs=2, overseer=ScriptedOverseer(), seed=5, backend=backend)
    scripted.reset()
    rng = np.random.default_rng(5)
    for _ in range(400):
        scripted.step(rng.integers(6, size=2))
    totals = scripted.counters.summary()
    scripted.close()
    assert totals["blocks"] > 0 and totals["catastrophes_on_blocks"] == 0
    assert totals["block_rate"] == totals["blocks"] / totals["steps"]


class BlocksEnvZeroThrice(BaseOverseer):
    """Blocks env 0's first three proposals from its step 5 on; passes everything else."""

    name = "env-zero"

    def __init__(self):
        self.left = 3

    def review(self, context, action):
        block = context.env_index == 0 and context.step >= 5 and self.left > 0
        self.left -= block
        return Decision(block=block)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dummy", "shared", "subproc"])
def test_prune_leaves_a_blocked_env_where_it_was_while_the_others_step(backend):
    """A pruned step does not step its env: same RAM, same observation, the penalty as reward; the other env
    steps on; once unblocked the env goes on from where it was held."""
    venv = make_vec_env(PONG, n_envs=2, overseer=BlocksEnvZeroThrice(), mode="prune", penalty=-1.0, seed=2,
                        backend=backend)
    try:
        obs = venv.reset()
        for _ in range(5):
            obs, *_ = venv.step(np.array([3, 3]))
        for step in range(4):
            rams = [context.state.ram.copy() for context in venv.contexts]
            before = obs.copy()
            obs, rewards, _, infos = venv.step(np.array([3, 3]))
            after = [context.state.ram for context in venv.contexts]
            assert not infos[1]["blocked"] and infos[1]["executed_action"] == 3
            assert not np.array_equal(after[1], rams[1]), "env 1 stepped"
            if step < 3:
                assert infos[0]["blocked"] and infos[0]["executed_action"] == -1 and rewards[0] == -1.0
                assert np.array_equal(after[0], rams[0]) and np.array_equal(obs[0], before[0]), "env 0 held"
            else:
                assert not infos[0]["blocked"] and infos[0]["executed_action"] == 3
                assert not np.array_equal(after[0], rams[0]), "unblocked, env 0 steps on"
        assert venv.counters.totals["blocks"] == 3 and venv.counters.totals["steps"] == 18
    finally:
        venv.close()


@pytest.mark.parametrize("mode", ["replace", "prune"])
def test_a_blocker_scored_in_a_worker_process_decides_as_one_scored_here(mode):
    """On SharedMemoryVecEnv the Blocker's scores come from a worker process: every step's outcome and the counters
    equal those of the same Blocker reviewing in this process (in-process envs), through a handover from the
    scripted rule, episode ends, pruned steps and a handover back."""
    runs = {backend: make_vec_env(PONG, n_envs=3, overseer=ScriptedOverseer(), mode=mode, seed=3, with_frame=True,
                                  backend=backend, max_num_frames_per_episode=120)  # episodes of 30 steps
            for backend in ("shared", "dummy")}
    here = []
    try:
        for venv in runs.values():
            venv.reset()
        blocker = new_blocker("pong", ACTIONS, seed=0)  # blocks half the actions of the first frame
        frame = blocker.preprocessing.frames([runs["dummy"].contexts[0].state.frame])
        blocker.threshold_logit = float(np.median(blocker.action_logits(frame)))
        rng = np.random.default_rng(3)
        for step in range(90):
            if step in (20, 70):
                for backend, venv in runs.items():
                    overseer = BlockerOverseer(blocker) if step == 20 else ScriptedOverseer()
                    score = overseer._score if step == 20 else None
                    if score is not None:
                        overseer._score = lambda contexts, b=backend, s=score: here.append(b) or s(contexts)
                    venv.set_overseer(overseer)
            actions = rng.integers(6, size=3)
            outcomes = {backend: venv.step(actions)[1:] for backend, venv in runs.items()}
            (rewards, dones, infos), (rewards_here, dones_here, infos_here) = outcomes.values()
            assert np.array_equal(rewards, rewards_here) and np.array_equal(dones, dones_here)
            assert [[info[key] for key in OUTCOME] for info in infos] == [[info[key] for key in OUTCOME]
                                                                          for info in infos_here]
        totals = {backend: venv.counters.totals for backend, venv in runs.items()}
        assert totals["shared"] == totals["dummy"] and totals["shared"]["blocks"] > 10
        assert set(here) == {"dummy"}, "on the shared backend every batch was scored in the worker"
        assert runs["dummy"].counters.episodes and not runs["shared"].venv._scoring
    finally:
        for venv in runs.values():
            venv.close()


def test_frames_stay_in_the_workers_while_a_blocker_scores_there_and_come_back_for_labels(tmp_path):
    """While a Blocker scored in worker 0 reviews and no labels are stored, the infos carry no RGB frames (their
    copy cost every step); an overseer that stores labels gets them back, and the frames it stores, the first one
    included, are those the in-process envs store."""
    from saferl.labels.store import LabelStore

    runs = {backend: make_vec_env(PONG, n_envs=3, overseer=ScriptedOverseer(), seed=5, with_frame=True,
                                  backend=backend, max_num_frames_per_episode=120)
            for backend in ("shared", "dummy")}
    stores = {backend: LabelStore.create(tmp_path / backend, "pong", ACTIONS) for backend in runs}
    try:
        for venv in runs.values():
            venv.reset()
        blocker = new_blocker("pong", ACTIONS, seed=0)
        rng = np.random.default_rng(5)
        for step in range(60):
            if step in (10, 31):
                for backend, venv in runs.items():
                    venv.set_overseer(BlockerOverseer(blocker) if step == 10 else ScriptedOverseer(),
                                      label_store=None if step == 10 else stores[backend])
            actions = rng.integers(6, size=3)
            infos = {backend: venv.step(actions)[3] for backend, venv in runs.items()}
            if 10 <= step < 20:
                assert all(info["game_state"].frame is None for info in infos["shared"])
                assert all(info["game_state"].frame is not None for info in infos["dummy"])
            if step == 19:
                runs["shared"].keep_frames()  # a wrapper above reads them: they come back at once
                assert all(context.state.frame is not None for context in runs["shared"].contexts)
            if 20 <= step < 31:
                assert all(info["game_state"].frame is not None for info in infos["shared"])
        for store in stores.values():
            store.flush()
        assert len(stores["shared"]) == len(stores["dummy"]) == 29 * 3
        shared, here = (stores[b].frames(range(len(stores[b]))) for b in ("shared", "dummy"))
        assert np.array_equal(shared, here) and len(np.unique(shared.reshape(len(shared), -1), axis=0)) > 3
    finally:
        for venv in runs.values():
            venv.close()
        for store in stores.values():
            store.close()
