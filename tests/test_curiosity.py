"""The exploration bonus (random network distillation) on real ALE frames: it is larger on frames unlike those
seen, it reaches the learner's reward and never the game's return or the safety counters, and it resumes
from a checkpoint exactly."""

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from saferl.agents import OversightSpec, make_agent
from saferl.agents.base import check_hyperparams
from saferl.agents.curiosity import STATE_FILE, WARMUP_STEPS, RNDBonus
from saferl.env.agent_view import AgentView
from saferl.env.ale import make_ale_env
from saferl.errors import SaferlError
from saferl.games import get_game

PONG = get_game("pong_no_sticky")
TINY = {"n_envs": 2, "n_steps": 8, "rnd_coef": 0.5, "backend": "dummy"}


def screens(game: str, steps: int, seed: int) -> np.ndarray:
    """The agent's 84 x 84 screens of ``steps`` random steps of ``game``."""
    env = AgentView(make_ale_env(get_game(game), seed=seed))
    frames = [env.reset(seed=seed)[0]]
    rng = np.random.default_rng(seed)
    for _ in range(steps - 1):
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(env.reset()[0] if terminated or truncated else obs)
    env.close()
    return np.stack(frames)


def pong_venv(n_envs: int = 2) -> VecFrameStack:
    return VecFrameStack(DummyVecEnv([lambda: AgentView(make_ale_env(PONG, seed=3), channel_axis=True)] * n_envs), 4)


def test_the_bonus_falls_on_frames_like_the_ones_learned_from_and_stays_high_on_frames_unlike_them():
    torch.manual_seed(0)
    bonus = RNDBonus(pong_venv(), coef=1.0, seed=0)
    pong, invaders = screens("pong_no_sticky", 600, seed=1), screens("space_invaders", 64, seed=1)
    bonus.frame_stats.update(pong.astype(np.float64))
    unseen = pong[512:]  # Pong screens the predictor never learns from, like the ones it does
    before = np.median(bonus.novelty(unseen, learn=False))
    for _ in range(6):
        for start in range(0, 512, 32):
            bonus.novelty(pong[start:start + 32])
    familiar, strange = np.median(bonus.novelty(unseen, learn=False)), np.median(bonus.novelty(invaders, learn=False))
    assert familiar < before / 2, f"the predictor learned Pong's screens: {before:.3f} -> {familiar:.3f}"
    assert strange > 50 * familiar, (strange, familiar)
    bonus.close()


@pytest.mark.slow
def test_the_bonus_reaches_the_learners_reward_and_neither_the_game_return_nor_the_safety_counters(tmp_path):
    torch.set_num_threads(1)
    agent = make_agent("a2c", PONG, 4000, OversightSpec("scripted", "replace", 0.0), seed=0, hyperparams=TINY)
    rewards = []
    step_wait = agent.curiosity.step_wait

    def recorded():
        out = step_wait()
        rewards.append(out[1].copy())
        return out

    agent.curiosity.step_wait = recorded
    agent.learn_until(2400)
    after_warmup = np.concatenate(rewards[WARMUP_STEPS + 1:])
    assert (np.concatenate(rewards[:WARMUP_STEPS]) % 1 == 0).all(), "no bonus while frame statistics warm up"
    assert (after_warmup % 1 != 0).mean() > 0.99, "past the warmup the learner's reward carries the bonus"
    episodes = agent.counters.episodes
    assert episodes, "a Pong game of 764+ steps ended in 1,200 steps of each env"
    assert all(float(row["game_return"]).is_integer() and float(row["return"]).is_integer() for row in episodes)
    assert agent.counters.totals["catastrophes"] == 0
    agent.close()


@pytest.mark.slow
def test_a_resumed_agent_has_the_predictor_and_statistics_it_saved_and_a_damaged_state_is_refused(tmp_path):
    torch.set_num_threads(1)
    spec = OversightSpec("scripted", "replace", 0.0)
    agent = make_agent("a2c", PONG, 4000, spec, seed=0, hyperparams=TINY)
    agent.learn_until(400)
    agent.save(tmp_path / "ck")
    probe = screens("pong_no_sticky", 16, seed=5)
    saved = agent.curiosity.novelty(probe, learn=False)
    again = make_agent("a2c", PONG, 4000, spec, seed=1, hyperparams=TINY)
    assert not np.allclose(again.curiosity.novelty(probe, learn=False), saved), "another seed starts elsewhere"
    again.load(tmp_path / "ck")
    np.testing.assert_allclose(again.curiosity.novelty(probe, learn=False), saved, rtol=1e-5)
    assert again.curiosity.steps == agent.curiosity.steps == 200
    np.testing.assert_array_equal(again.curiosity.intrinsic_return, agent.curiosity.intrinsic_return)

    state = torch.load(tmp_path / "ck" / STATE_FILE, weights_only=True)
    state["frame_var"] = torch.full_like(state["frame_var"], float("nan"))
    torch.save(state, tmp_path / "ck" / STATE_FILE)
    with pytest.raises(SaferlError, match=f"{STATE_FILE} is not the exploration state.*NaN"):
        again.load(tmp_path / "ck")
    (tmp_path / "ck" / STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(SaferlError, match=f"{STATE_FILE} is not the exploration state"):
        again.load(tmp_path / "ck")
    (tmp_path / "ck" / STATE_FILE).unlink()
    with pytest.raises(SaferlError, match=f"{STATE_FILE} is missing.*rnd_coef"):
        again.load(tmp_path / "ck")
    agent.close()
    again.close()


def test_rnd_coef_is_checked_before_any_work():
    check_hyperparams("a2c", {"rnd_coef": 0.5})
    with pytest.raises(SaferlError, match="rnd_coef=-1.*>= 0"):
        check_hyperparams("ppo", {"rnd_coef": -1})
    with pytest.raises(SaferlError, match="a3c takes no hyperparameter rnd_coef"):
        check_hyperparams("a3c", {"rnd_coef": 0.5})
