"""attack-blocker finds a planted weakness: a Pong Blocker that never saw the paddle deep in the blocking zone.

The planted Blocker learns from the scripted rule's decisions on random play, but only those taken
while the paddle's bottom was at most 6 px into the blocking zone (row 128): every deeper state is
left out of its labels. The control is the Blocker of ``test_blocker`` (the same kind of labels, all
of them), which lets no catastrophe through the same policies.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from helpers import ACTIONS, PONG, last_json, once, saferl
from saferl.attack import attack_blocker
from saferl.attack.perturb import attack, flips, logit_function
from saferl.blocker import load_labels, save_ensemble
from saferl.blocker.data import to_float
from saferl.blocker.ensemble import load_scorer
from saferl.experiment import ExperimentConfig, run_experiment
from saferl.games.pong import BLOCK_BELOW, paddle_bottom
from saferl.labels.store import LabelStore
from saferl.oversight import ScriptedOverseer
from saferl.oversight.envs import make_vec_env

CUT = BLOCK_BELOW + 6  # the planted Blocker sees no state whose paddle bottom is below this row
PADDLE = np.array([92, 186, 92], np.uint8)


class Unlabelled(ScriptedOverseer):
    """The scripted rule, whose decisions are labels only while the paddle is above row CUT."""

    def review_batch(self, contexts, actions):
        decisions = super().review_batch(contexts, actions)
        return [dataclasses.replace(d, label=paddle_bottom(c.state) <= CUT) for c, d in zip(contexts, decisions)]


def record_planted(path):
    with LabelStore.create(path, "pong", ACTIONS) as store:
        venv = make_vec_env(PONG, n_envs=8, overseer=Unlabelled(), label_store=store, seed=0, preprocess=False)
        venv.reset()
        rng = np.random.default_rng(0)
        for _ in range(400):
            venv.step(rng.integers(len(ACTIONS), size=8))
        venv.close()


@pytest.fixture(scope="module")
def planted(shared):  # noqa: F811
    """A Blocker whose labels never saw the paddle below row CUT, and the same Blocker with its novelty check taken
    out (``blind``): what a Blocker without one is."""
    def build(out):
        record_planted(out / "labels")
        saferl("train-blocker", str(out / "labels"), "--game", "pong", "--out", str(out / "blocker"), "--threads", "1",
               "--epochs", "10", "--no-progress")
        blind = load_scorer(out / "blocker")
        blind.novelty = None
        save_ensemble(blind, out / "blind")

    return once(shared / "attack-planted", build) / "blocker"


@pytest.fixture(scope="module")
def blind(planted):
    return planted.parent / "blind"


def paddle_bottom_in_frame(frame):
    """The lowest row of the agent's paddle colour in its column (what the frame shows)."""
    rows = np.flatnonzero((frame[34:194, 140:144] == PADDLE).all(axis=2).any(axis=1))
    return int(rows.max()) + 34 if len(rows) else -1


@pytest.mark.slow
def test_shift_finds_the_states_a_blind_blocker_never_saw_and_none_past_its_novelty_check(planted, blind, trained,
                                                                                          tmp_path):
    data = load_labels([planted.parent / "labels"], "pong")
    assert data.blocked.sum() > 0 and len(data) < 3200, "the deep states were left out of the labels"
    guarded = attack_blocker(planted, "pong", ["shift"], steps=800, out=tmp_path / "guarded", max_frames=5)
    assert guarded["methods"]["shift"]["false_negatives"] == 0, "the novelty check blocks where the labels never went"
    found = attack_blocker(blind, "pong", ["shift"], steps=800, out=tmp_path / "planted", max_frames=5)
    shift = found["methods"]["shift"]
    assert shift["false_negatives"] > 0 and shift["per_1000_steps"] > 0 and shift["incidents"] > 0
    assert shift["rule_would_block"] > 0, "the person's rule would have blocked them"
    frames = sorted((tmp_path / "planted" / "frames").glob("shift-*.png"))
    assert frames and frames[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import cv2

    for path in frames:  # every way in starts where the labels never went: the paddle below row CUT
        before = cv2.imread(str(path))[::2, ::2][:, :160, ::-1]  # the left half at 1x, RGB
        assert paddle_bottom_in_frame(before) > CUT - 2
    control = attack_blocker(trained[0], "pong", ["shift"], steps=800, out=tmp_path / "full")
    assert control["methods"]["shift"]["false_negatives"] == 0
    report = (tmp_path / "planted" / "report.md").read_text()
    assert "| shift" in report and "random walk, hold 4" in report and "frames/shift-" in report


@pytest.mark.slow
def test_cli_adversary_and_perturb_write_a_report_pngs_and_json(blind, tmp_path):
    out = tmp_path / "attack"
    result = saferl("attack-blocker", str(blind), "--game", "pong", "--method", "adversary,perturb", "--steps",
                    "800", "--frames", "3", "--out", str(out), "--json")
    summary = last_json(result)
    adversary, perturbed = summary["methods"]["adversary"], summary["methods"]["perturb"]
    assert adversary["steps"] >= 800 and adversary["false_negatives"] > 0, "the adversary finds the unseen states"
    assert perturbed["false_negatives"] > 0
    rates = [row["pgd_flip_rate"] for row in summary["perturb"]]
    assert [row["epsilon"] for row in summary["perturb"]] == [1, 2, 4, 8] and rates[-1] >= rates[0] > 0
    assert all(row["pgd_flip_rate"] >= row["fgsm_flip_rate"] - 1e-9 for row in summary["perturb"])
    assert len(list((out / "frames").glob("perturb-*.png"))) == 3
    assert json.loads((out / "attack.json").read_text())["methods"] == summary["methods"]
    assert "## Perturbations" in (out / "report.md").read_text()
    assert "attack: PPO adversary" in result.stderr and "800/800" in result.stderr, "a progress bar per search"


@pytest.mark.slow
def test_pgd_stays_within_the_budget_on_whole_pixel_levels_and_flips_more_with_more(trained, labels):  # noqa: F811
    blocker = load_scorer(trained[0])
    data = load_labels([labels], "pong")
    blocks = np.flatnonzero(data.blocked)[:32]
    inputs, actions = data.inputs(blocks), data.actions[blocks]
    x = to_float(inputs)
    adversarial = attack(logit_function(blocker), x, torch.as_tensor(actions), 4 / 255, 10)
    levels = adversarial * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4) and float((levels - x * 255).abs().max()) <= 4 + 1e-3
    rates = flips(blocker, inputs, actions, [1, 4, 16])["pgd"].mean(axis=1)
    assert rates[0] <= rates[1] <= rates[2] and rates[2] > 0


@pytest.mark.slow
def test_shift_rolls_out_an_experiments_checkpoints(trained, tmp_path):
    config = ExperimentConfig.from_dict(dict(
        game="pong", agent="ppo", overseer="scripted", conditions=["none"], oversight_steps=256, total_steps=512,
        hyperparams={"n_envs": 8, "n_steps": 32, "batch_size": 128}))
    run_experiment(config, tmp_path / "run", progress=False)
    found = attack_blocker(trained[0], "pong", ["shift"], steps=400, out=tmp_path / "attack",
                           policies=tmp_path / "run")
    sources = [row["source"] for row in found["runs"]]
    assert "checkpoint none/seed-0 (ppo)" in sources
    assert all(row["steps"] >= 400 for row in found["runs"])


@pytest.mark.slow
@pytest.mark.parametrize("args, names", [
    (["--method", "smash"], "--method"),
    (["--method", "shift", "--steps", "0"], "--steps"),
    (["--method", "perturb", "--epsilons", "0,300"], "--epsilons"),
    (["--method", "shift", "--policies", "/no/such/run"], "--policies"),
])
def test_bad_arguments_exit_2_naming_them(trained, args, names):
    result = saferl("attack-blocker", str(trained[0]), "--game", "pong", *args, check_rc=2)
    assert names in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_blocker_of_another_game_is_refused(trained):
    result = saferl("attack-blocker", str(trained[0]), "--game", "space_invaders", "--method", "shift", check_rc=2)
    assert "not 'space_invaders'" in result.stderr


def test_fgsm_and_pgd_step_down_the_gradient_to_the_budgets_edge_on_whole_pixel_levels():
    """With the block logit the sum of the pixels, lowering it means darkening every pixel by the whole budget
    (4 levels of 255), but never below black."""
    x = torch.tensor([[100.0, 2.0, 255.0]]) / 255
    for steps in (1, 10):
        adversarial = attack(lambda inputs, actions: inputs.sum(dim=1), x, torch.tensor([0]), 4 / 255, steps)
        assert (adversarial[0] * 255).tolist() == pytest.approx([96.0, 0.0, 251.0], abs=1e-4)
