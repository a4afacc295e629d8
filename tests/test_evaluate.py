"""``saferl evaluate``: a saved agent played for whole episodes on the real ROM, with and without an overseer, its
figures, its GIF, and a saved agent's files checked before they are trusted."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers import PONG
from saferl.agents import OversightSpec, make_agent
from saferl.agents.policy_file import load_policy
from saferl.cli import main
from saferl.experiment.evaluate import evaluate_agent


@pytest.fixture(scope="module")
def saved_agent(tmp_path_factory):
    """A PPO agent after one tiny rollout of Pong, exported as ``saferl experiment`` exports a finished run's."""
    folder = tmp_path_factory.mktemp("agent")
    agent = make_agent("ppo", PONG, 64, OversightSpec(), seed=0, device="cpu",
                       hyperparams={"n_envs": 2, "n_steps": 16, "batch_size": 32, "backend": "dummy"})
    agent.learn_until(32)
    agent.export_policy(folder / "agent")
    policy = agent.model.policy
    agent.close()
    return folder / "agent", policy


def test_the_saved_policy_acts_as_the_trained_one(saved_agent):
    folder, trained = saved_agent
    record, act = load_policy(folder, "pong")
    observations = np.random.default_rng(0).integers(0, 256, (16, 4, 84, 84), dtype=np.uint8)
    assert record.algorithm == "ppo" and record.frame_stack == 4 and record.num_timesteps >= 32
    assert np.array_equal(act(observations, True), trained.predict(observations, deterministic=True)[0])


def test_evaluate_plays_whole_episodes_and_the_scripted_overseer_stops_every_catastrophe(saved_agent, tmp_path):
    folder, _ = saved_agent
    bare = evaluate_agent(folder, "pong", episodes=2, max_frames=4000, seed=1, deterministic=False)
    gif = tmp_path / "play.gif"
    guarded = evaluate_agent(folder, "pong", overseer="scripted", episodes=2, max_frames=4000, seed=1, video=gif,
                             deterministic=False)
    for summary in (bare, guarded):
        assert summary["episodes"] == 2 and len(summary["returns"]) == 2
        assert 2 * 200 < summary["steps"] <= 2 * 1000  # an episode ends at game over or 4,000 frames (1,000 steps)
        assert all(-21 <= r <= 21 for r in summary["returns"]), "game returns, no penalty added"
    assert bare["blocks"] == 0 and guarded["catastrophes"] == 0 and guarded["catastrophes_on_blocks"] == 0
    assert bare["catastrophes"] + guarded["blocks"] > 0, "the agent must come near the zone for this to mean much"
    with Image.open(gif) as image:
        frames = [np.asarray(frame.convert("RGB")) for frame in _frames(image)]
    # every second frame; the GIF writer merges a frame identical to the one before (the ball off screen)
    assert guarded["steps"] // 2 - 20 <= len(frames) <= guarded["steps"] // 2 and frames[0].shape == (210, 160, 3)
    red = [bool((f[:4] == (255, 0, 0)).all()) for f in frames]
    assert (sum(red) > 0) == (guarded["blocks"] > 0)


def test_evaluate_under_a_trained_blocker_counts_its_blocks_and_marks_them(saved_agent, trained, tmp_path, capsys):
    """``--overseer blocker:DIR`` puts the trained Blocker between the agent and the game: its blocks are counted,
    every catastrophe is judged by the game's ground truth, and each blocked step's frame is framed in red."""
    folder, _ = saved_agent
    blocker, _ = trained
    gif = tmp_path / "blocker.gif"
    assert main(["evaluate", str(folder), "--game", "pong", "--overseer", f"blocker:{blocker}", "--episodes", "1",
                 "--max-frames", "3000", "--seed", "2", "--stochastic", "--video", str(gif), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    bare = evaluate_agent(folder, "pong", episodes=1, max_frames=3000, seed=2, deterministic=False)
    assert summary["overseer"] == f"blocker:{blocker}" and summary["episodes"] == 1
    assert summary["blocks"] > 0 and bare["blocks"] == 0, "near-random play takes the paddle low: the Blocker acts"
    with Image.open(gif) as image:
        red = [bool((np.asarray(frame.convert("RGB"))[:4] == (255, 0, 0)).all()) for frame in _frames(image)]
    assert 0 < sum(red) <= summary["blocks"]


def _frames(image):
    for k in range(image.n_frames):
        image.seek(k)
        yield image


def test_a_damaged_or_foreign_agent_is_refused_in_one_line(saved_agent, tmp_path, capsys):
    folder, _ = saved_agent
    edited = tmp_path / "edited"
    edited.mkdir()
    for name in ("policy.json", "policy.safetensors"):
        (edited / name).write_bytes((folder / name).read_bytes())
    meta = json.loads((edited / "policy.json").read_text())
    (edited / "policy.json").write_text(json.dumps({**meta, "frame_stack": 2}))
    cases = [([str(edited), "--game", "pong"], "digest"), ([str(folder), "--game", "space_invaders"], "pong"),
             ([str(tmp_path), "--game", "pong"], "no saved agent"),
             ([str(folder), "--game", "pong", "--video", str(tmp_path / "x.mp4")], ".gif")]
    for args, says in cases:
        assert main(["evaluate", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err


@pytest.mark.slow
def test_an_a3c_agent_with_its_lstm_state_plays_through_evaluate(tmp_path):
    """An exported A3C agent with an LSTM (its state carried through evaluate's act function) plays whole episodes
    under the scripted overseer; the same seed and deterministic play give the same episodes twice."""
    agent = make_agent("a3c", PONG, 400, OversightSpec(), seed=0, hyperparams={"n_workers": 2, "lstm": True})
    agent.learn_until(200)
    agent.export_policy(tmp_path / "agent")
    agent.close()
    first, again = (evaluate_agent(tmp_path / "agent", "pong", overseer="scripted", episodes=2, max_frames=3000,
                                   seed=3, deterministic=True) for _ in range(2))
    # No zero-catastrophe claim: a policy that holds DOWN can beat the scripted rule (saferl/games/pong.py).
    assert first["episodes"] == 2 and 2 * 100 < first["steps"] <= 2 * 750
    assert first["returns"] == again["returns"] and first["steps"] == again["steps"]
    assert (first["blocks"], first["catastrophes"]) == (again["blocks"], again["catastrophes"])
    assert main(["evaluate", str(tmp_path / "agent"), "--game", "pong", "--episodes", "1", "--max-frames", "800",
                 "--json"]) == 0
