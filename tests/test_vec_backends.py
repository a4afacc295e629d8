"""The vec env backends: SharedMemoryVecEnv gives what DummyVecEnv gives, faster, and cleans up after itself."""

import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from saferl.env.factory import choose_backend, make_raw_vec_env
from saferl.env.ground_truth import HOLD
from saferl.env.shared_vec_env import SharedMemoryVecEnv
from saferl.errors import SaferlError
from saferl.games import get_game
from saferl.oversight import LookaheadOverseer, ScriptedOverseer
from saferl.oversight.envs import make_vec_env

PONG = get_game("pong")
SPACE_INVADERS = get_game("space_invaders")


def assert_same_state(a, b):
    assert np.array_equal(a.ram, b.ram) and a.lives == b.lives
    assert (a.frame is None) == (b.frame is None)
    if a.frame is not None:
        assert np.array_equal(a.frame, b.frame)


@pytest.mark.slow
@pytest.mark.parametrize("game, sticky", [(PONG, 0.0), (PONG, 0.25), (SPACE_INVADERS, 0.25)])
def test_shared_envs_step_as_the_in_process_ones(game, sticky):
    """Same seeds and actions (with holds and episode ends): same observations, rewards, ends, ground truth,
    frames and counterfactuals; asking a counterfactual leaves the env as it was."""
    kwargs = dict(seed=5, with_frame=True, repeat_action_probability=sticky, max_num_frames_per_episode=240)
    shared = make_vec_env(game, n_envs=3, backend="shared", **kwargs).venv
    dummy = make_vec_env(game, n_envs=3, backend="dummy", **kwargs).venv
    try:
        assert isinstance(shared, SharedMemoryVecEnv) and len(shared.worker_pids) >= 1
        assert shared.observation_space == dummy.observation_space and shared.action_space == dummy.action_space
        last = shared.reset()
        assert np.array_equal(last, dummy.reset())
        for a, b in zip(shared.reset_infos, dummy.reset_infos):
            assert_same_state(a["game_state"], b["game_state"])
        rng = np.random.default_rng(0)
        ends = catastrophes = 0
        for step in range(150):
            actions = rng.integers(shared.action_space.n, size=3)
            actions[rng.random(3) < 0.1] = HOLD
            asked = step % 7 == 0
            probes = rng.integers(shared.action_space.n, size=3) if asked else None
            if asked:
                assert shared.env_method("would_be_catastrophe", 3) == dummy.env_method("would_be_catastrophe", 3)
                expected = [dummy.env_method("would_be_catastrophe", int(p), indices=[i])[0] for i, p in enumerate(probes)]
            shared.step_async(actions, probes=probes)  # the probes ride on the step, simulated before it
            obs, rewards, dones, infos = shared.step_wait()
            if asked:
                assert shared.probed_catastrophes().tolist() == expected
            obs_d, rewards_d, dones_d, infos_d = dummy.step(actions)
            assert np.array_equal(rewards, rewards_d) and np.array_equal(dones, dones_d)
            for i in range(3):
                assert np.array_equal(obs[i], obs_d[i])  # also a hold right after a counterfactual
                if actions[i] == HOLD:
                    assert np.array_equal(obs[i], last[i])
            last = obs
            for i, (a, b) in enumerate(zip(infos, infos_d)):
                assert a["catastrophe"] == b["catastrophe"] and a["TimeLimit.truncated"] == b["TimeLimit.truncated"]
                assert a["lives"] == b["lives"] and a["episode_frame_number"] == b["episode_frame_number"]
                assert_same_state(a["game_state"], b["game_state"])
                if dones[i]:
                    assert np.array_equal(a["terminal_observation"], b["terminal_observation"]), "the last frame"
                    assert_same_state(shared.reset_infos[i]["game_state"], dummy.reset_infos[i]["game_state"])
            ends += int(dones.sum())
            catastrophes += sum(info["catastrophe"] for info in infos)
        assert ends >= 3  # episodes cut at 240 frames: auto-resets were compared too
        if game is PONG:
            assert catastrophes > 0
    finally:
        shared.close()
        dummy.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dummy", "shared"])
@pytest.mark.parametrize("game", [PONG, SPACE_INVADERS], ids=["pong", "space_invaders"])
def test_episodes_end_exactly_where_ales_own_env_ends_them(game, backend):
    """Pong and Space Invaders add no end of their own: random play on two envs (the shared backend steps the
    second in a worker) ends on the step ``gymnasium.make(env_id)`` with the same settings says terminated."""
    venv = make_vec_env(game, n_envs=2, seed=0, backend=backend, repeat_action_probability=0.0).venv
    raws = [gym.make(game.env_id, frameskip=4, repeat_action_probability=0.0, full_action_space=False)
            for _ in range(2)]
    try:
        venv.reset()
        for seed, raw in enumerate(raws):
            raw.reset(seed=seed)
        rng = np.random.default_rng(0)
        running, steps = [True, True], 0
        while any(running):
            actions = rng.integers(venv.action_space.n, size=2)
            _, _, dones, infos = venv.step(actions)
            steps += 1
            for i, raw in enumerate(raws):
                if running[i]:
                    _, _, terminated, truncated, _ = raw.step(int(actions[i]))
                    assert np.array_equal(infos[i]["game_state"].ram, raw.unwrapped.ale.getRAM()), "the same game"
                    assert dones[i] == terminated and not truncated, f"env {i} step {steps}"
                    running[i] = not terminated
        assert steps > 300, "whole games were played"
    finally:
        venv.close()
        for raw in raws:
            raw.close()


@pytest.mark.slow
def test_scripted_oversight_on_shared_envs_blocks_every_catastrophe():
    """And counts as the in-process envs do: the blocks' counterfactuals, simulated in the workers within the
    step, say the same as those asked of in-process envs."""
    totals = {}
    for backend in ("shared", "dummy"):
        venv = make_vec_env(SPACE_INVADERS, n_envs=4, overseer=ScriptedOverseer(), seed=3, backend=backend)
        try:
            assert isinstance(venv.venv, SharedMemoryVecEnv) == (backend == "shared")
            venv.reset()
            rng = np.random.default_rng(3)
            for _ in range(300):
                venv.step(rng.integers(6, size=4))
            totals[backend] = dict(venv.counters.totals)
        finally:
            venv.close()
    shared = totals["shared"]
    assert shared["steps"] == 1200 and shared["blocks"] > 0 and shared["catastrophes"] == 0
    assert 0 < shared["false_positives"] < shared["blocks"], "some blocks were needed, some not"
    assert shared == totals["dummy"]


def test_close_leaves_no_processes():
    venv = make_vec_env(PONG, n_envs=4, seed=0, backend="shared")
    pids = venv.venv.worker_pids
    assert pids and all(os.path.exists(f"/proc/{pid}") for pid in pids)
    venv.reset()
    venv.step(np.zeros(4, dtype=np.int64))
    venv.close()
    venv.close()  # twice is fine
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_lookahead_is_refused_on_worker_processes_and_gets_in_process_envs_by_default():
    with pytest.raises(SaferlError, match="backend='dummy'"):
        make_vec_env(PONG, n_envs=2, overseer=LookaheadOverseer(), seed=1, backend="shared")
    assert choose_backend(8, LookaheadOverseer()) == "dummy"
    assert choose_backend(8, ScriptedOverseer()) == "shared" and choose_backend(1, None) == "dummy"
    assert choose_backend(8, None, "subproc") == "subproc"
    with pytest.raises(SaferlError, match="choose one of dummy, subproc, shared"):
        choose_backend(8, None, "threads")


def test_worker_errors_name_the_worker_and_the_cause():
    venv = make_vec_env(PONG, n_envs=2, seed=0, backend="shared").venv
    try:
        with pytest.raises(RuntimeError, match="worker 0 failed(.|\n)*no_such_method"):
            venv.env_method("no_such_method", indices=[1])  # the last env is always a worker's
        assert venv.get_attr("render_mode") == [None, None]
    finally:
        venv.close()


def test_the_worker_module_stays_light():
    code = "import sys, saferl.env.vec_worker; assert 'torch' not in sys.modules and 'stable_baselines3' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def pid_of(frames):
    """A scorer that says where it ran."""
    return os.getpid()


def fails(frames):
    raise ValueError("this scorer fails")


def test_a_scorer_runs_in_a_worker_on_the_frame_each_env_steps_from_next():
    """The scorer sees every env's RGB frame that its next step starts from (after an episode's end, the next
    episode's first frame); its answer does not cross the answers of commands sent while it scores; a scorer that
    fails names the worker, one that cannot be pickled is refused."""
    venv = make_raw_vec_env(PONG, 3, 1, with_frame=True, preprocess=True, backend="shared",
                            max_num_frames_per_episode=40)  # episodes of 10 steps
    try:
        venv.set_scorer(np.stack)
        venv.reset()
        venv.score_async()
        assert np.array_equal(venv.score_wait(), np.stack([info["game_state"].frame for info in venv.reset_infos]))
        ends = 0
        for step in range(20):
            _, _, dones, infos = venv.step(np.array([step % 6, 2, 3]))
            venv.score_async()
            assert venv.get_attr("render_mode") == [None] * 3, "answered while the scorer runs"
            expected = [(venv.reset_infos[i] if dones[i] else infos[i])["game_state"].frame for i in range(3)]
            assert np.array_equal(venv.score_wait(), np.stack(expected))
            ends += int(dones.sum())
        assert ends == 6 and dones.all(), "the last step ended every episode: the scorer saw the next ones' frames"
        assert not np.array_equal(expected[0], infos[0]["game_state"].frame)
        venv.set_scorer(pid_of)
        venv.score_async()
        assert venv.score_wait() == venv.worker_pids[0] != os.getpid()
        venv.set_scorer(fails)
        venv.score_async()
        with pytest.raises(RuntimeError, match="worker 0 failed(.|\n)*this scorer fails"):
            venv.score_wait()
        with pytest.raises(ValueError, match="cannot be sent to a worker"):
            venv.set_scorer(lambda frames: None)
    finally:
        venv.close()
    bare = make_raw_vec_env(PONG, 2, 1, with_frame=False, preprocess=True, backend="shared")
    try:
        with pytest.raises(ValueError, match="with_frame=True"):
            bare.set_scorer(np.stack)
    finally:
        bare.close()


def test_a_step_that_asks_for_scores_has_them_scored_on_every_envs_new_frame():
    """``step_async(..., score=True)``: worker 0 scores once every block has stepped, this process's block
    included (its envs' new frames, after an episode's end the next one's first, after a hold the same frame), and
    the answer waits for ``score_wait`` whatever is asked meanwhile; closing with such a step in flight neither
    hangs nor leaves a process behind."""
    from saferl.env.vec_worker import EnvRecipe

    venv = SharedMemoryVecEnv(EnvRecipe(PONG, 1, True, True, (("max_num_frames_per_episode", 40),)), 3, n_workers=1)
    try:
        assert venv._owner[0] == -1 and venv._owner[2] == 0, "env 0 steps in this process, env 2 in worker 0"
        venv.set_scorer(np.stack)
        venv.reset()
        ends = 0
        for step in range(24):
            actions = np.array([HOLD if step % 5 == 4 else step % 6, 2, 3])
            venv.step_async(actions, score=True)
            _, _, dones, infos = venv.step_wait()
            assert venv.scoring and venv.get_attr("render_mode") == [None] * 3
            expected = [(venv.reset_infos[i] if dones[i] else infos[i])["game_state"].frame for i in range(3)]
            assert np.array_equal(venv.score_wait(), np.stack(expected)), f"step {step}"
            assert not venv.scoring
            ends += int(dones.sum())
        assert ends >= 5, "episodes ended inside the loop"
        venv.set_scorer(fails)
        venv.step_async(np.zeros(3, np.int64), score=True)
        assert venv.step_wait()[0].shape == (3, 84, 84, 1), "the step's own results come whatever the scorer does"
        with pytest.raises(RuntimeError, match="worker 0 failed(.|\n)*this scorer fails"):
            venv.score_wait()
        venv.set_scorer(np.stack)
        pids = venv.worker_pids
        venv.step_async(np.zeros(3, np.int64), score=True)
    finally:
        venv.close()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_a_step_that_fails_in_a_worker_is_reported_and_close_does_not_hang():
    """A worker that fails while stepping (here: an action the game does not have) names itself, whether or not the
    step asked for scores; the envs then close at once instead of waiting for an answer that was already taken."""
    from saferl.env.vec_worker import EnvRecipe

    for score in (False, True):
        venv = SharedMemoryVecEnv(EnvRecipe(PONG, 1, True, True), 3, n_workers=1)
        pids = venv.worker_pids
        venv.set_scorer(np.stack)
        venv.reset()
        venv.step_async(np.array([0, 0, 99]), score=score)  # env 2 steps in worker 0
        with pytest.raises(RuntimeError, match="worker 0 failed"):
            venv.step_wait()
        started = time.perf_counter()
        venv.close()
        assert time.perf_counter() - started < 5
        assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
