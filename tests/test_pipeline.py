"""The HIRL experiment end to end on real Pong at a tiny budget: phases, files, report, resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from saferl.blocker.ensemble import load_scorer
from saferl.cli import main
from saferl.errors import SaferlError
from saferl.experiment import ExperimentConfig, run_experiment
from saferl.experiment.run import phases
from saferl.labels.store import LabelStore

TINY = {"n_envs": 8, "buffer_size": 2000, "learning_starts": 200, "exploration_fraction": 1.0}
CUT = {"max_num_frames_per_episode": 320}  # 80 agent steps: episodes end inside the budget


def tiny_config(**changes):
    settings = dict(game="pong", agent="dqn", oversight_steps=800, total_steps=1600, checkpoint_every=800,
                    hyperparams=TINY, env=CUT, blocker={"epochs": 3, "margin": 0.01, "allow_degenerate": True})
    # 800 human-phase steps hold about 28 blocks: too few for a Blocker that does not raise the degeneration alarm
    # (tests/test_deferring.py checks that the alarm stops a handover); these tests are of the experiment's
    # mechanics, so they hand over anyway.
    settings.update(changes)
    return ExperimentConfig.from_dict(settings)


def read_rows(path):
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_experiment_runs_the_three_conditions_and_reports_the_counted_figures(tmp_path):
    rows = run_experiment(tiny_config(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    by_condition = {row["condition"]: row for row in rows}
    assert list(by_condition) == ["none", "penalty_only", "hirl"]
    for condition, row in by_condition.items():
        folder = run / "runs" / condition / "seed-0"
        curve, episodes = read_rows(folder / "curve.csv"), read_rows(folder / "episodes.csv")
        assert row["steps"] >= 1600
        assert json.loads((folder / "agent" / "policy.json").read_text())["num_timesteps"] == row["steps"], \
            "the finished agent is saved for saferl evaluate"
        assert float(curve[-1]["catastrophes"]) == row["catastrophes"], "the curve ends at the reported total"
        steps = [int(r["step"]) for r in curve]
        assert steps == sorted(steps)
        at_handover = [r for r in curve if int(r["step"]) == row["handover_step"] == 800]
        assert len(at_handover) == 1, "a curve row at the handover step"
        assert float(at_handover[0]["catastrophes"]) == row["catastrophes_during_human"], "counted at the handover"
        assert max(int(r["steps"]) for r in episodes) == 80, "ALE cuts episodes at 320 frames: 80 steps of 4 frames"
        assert sum(float(r["catastrophes"]) for r in episodes) <= row["catastrophes"]
        assert row["mean_return"] is not None
    none, shaped, hirl = by_condition["none"], by_condition["penalty_only"], by_condition["hirl"]
    assert none["blocks"] == 0 and none["catastrophes"] > 0 and none["human_labels"] == 0
    assert shaped["blocks"] > 0 and shaped["catastrophes"] > 0, "penalties do not stop an exploring agent"
    assert shaped["human_labels"] == shaped["steps"], "the reward-shaping baseline needs the human all along"
    assert hirl["catastrophes_during_human"] == 0, "the scripted overseer blocks every catastrophe"
    with LabelStore.open(run / "runs" / "hirl" / "seed-0" / "labels") as store:
        assert len(store) == hirl["human_labels"] >= 800
    phases = {r["phase"] for r in read_rows(run / "runs" / "hirl" / "seed-0" / "episodes.csv")}
    assert phases == {"oversight", "blocker"}
    assert (run / "runs" / "hirl" / "seed-0" / "blocker" / "ensemble.json").exists()
    assert hirl["blocker"]["labels"] == len(store)
    report = (run / "report.md").read_text()
    for condition in by_condition:
        assert f"`{condition}`" in report
    assert f" {none['catastrophes']:,} " in report and f" {shaped['blocks']:,} " in report
    assert json.loads((run / "report.json").read_text()) == rows
    for plot in ("catastrophes.png", "returns.png"):
        assert (run / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["total_steps"] == 1600 and "torch" in config["versions"]
    assert config["hyperparams"]["buffer_size"] == 2000


@pytest.mark.slow
def test_a_killed_experiment_resumes_without_resetting_counters_or_losing_labels(tmp_path):
    run = tmp_path / "run"
    args = ["experiment", "--game", "pong", "--agent", "dqn", "--conditions", "hirl", "--oversight-steps", "1200",
            "--total-steps", "2000", "--checkpoint-every", "400", "--blocker-epochs", "3",
            "--allow-degenerate-blocker", "--out", str(run), "--no-progress"]
    for key, value in TINY.items():
        args += ["--hyperparam", f"{key}={value}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "saferl.cli", *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    state = run / "runs" / "hirl" / "seed-0" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["totals"]["steps"] >= 400:
            break
        time.sleep(0.5)
    time.sleep(2)  # kill it between checkpoints
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = json.loads(state.read_text())
    assert 400 <= saved["totals"]["steps"] < 2000, "killed before the end"
    labels_before = len(LabelStore.open(run / "runs" / "hirl" / "seed-0" / "labels", recover=True))
    assert labels_before >= saved["totals"]["labels"]

    assert main(["experiment", "--resume", str(run), "--no-progress"]) == 0
    row = json.loads((run / "report.json").read_text())[0]
    assert row["steps"] >= 2000
    assert row["human_labels"] >= max(labels_before, 1200), "no label lost"
    curve = read_rows(run / "runs" / "hirl" / "seed-0" / "curve.csv")
    steps = [int(r["step"]) for r in curve]
    assert steps == sorted(steps) and steps[0] <= saved["totals"]["steps"], "the curve goes on from the checkpoint"
    for key in ("catastrophes", "blocks", "labels"):
        values = [float(r[key]) for r in curve]
        assert values == sorted(values), f"cumulative {key} never reset"
    assert row["blocks"] >= saved["totals"]["blocks"]


def terminal_sigint() -> None:
    """SIGINT as a process started from a terminal has it (default action, not blocked), whatever the pytest worker
    that starts the process was left with by earlier tests."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.slow
def test_ctrl_c_saves_every_run_in_progress_and_resume_finishes_them(tmp_path):
    run = tmp_path / "run"
    args = ["experiment", "--game", "pong", "--agent", "dqn", "--conditions", "none,hirl", "--workers", "2",
            "--oversight-steps", "1200", "--total-steps", "4000", "--checkpoint-every", "800", "--blocker-epochs", "3",
            "--allow-degenerate-blocker", "--out", str(run), "--no-progress"]
    for key, value in TINY.items():
        args += ["--hyperparam", f"{key}={value}"]
    process = subprocess.Popen([sys.executable, "-m", "saferl.cli", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True, preexec_fn=terminal_sigint)
    states = [run / "runs" / c / "seed-0" / "checkpoint" / "state.json" for c in ("none", "hirl")]
    started = time.time()
    while time.time() < started + 300 and not all(state.exists() for state in states):
        time.sleep(0.5)
    seen = {state.parents[2].name: json.loads(state.read_text())["totals"]["steps"] for state in states
            if state.exists()}
    time.sleep(3)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    code = process.wait(timeout=120)
    assert code == 130, (f"exit {code}; checkpoints seen after {time.time() - started - 3:.0f} s: {seen}\n"
                         + process.stderr.read().decode()[-2000:])
    saved = [json.loads(state.read_text())["totals"]["steps"] for state in states]
    assert all(800 <= steps < 4000 for steps in saved), "interrupted after the first checkpoint, before the end"
    assert any(steps % 800 for steps in saved), "a checkpoint taken at the interrupt, between the periodic ones"
    assert not (run / "report.json").exists()

    assert main(["experiment", "--resume", str(run), "--no-progress"]) == 0
    rows = json.loads((run / "report.json").read_text())
    assert [row["condition"] for row in rows] == ["none", "hirl"]
    assert all(row["steps"] >= 4000 for row in rows)


def test_block_penalty_sets_hirls_reward_for_a_block_and_leaves_penalty_only_its_own(tmp_path):
    """``block_penalty: 0`` -- a block costs hirl's agent nothing, in both of its phases -- while ``penalty_only``
    keeps ``penalty`` for every step the rule would block."""
    config = tiny_config(agent="a2c", conditions=["penalty_only", "hirl"], penalty=-1.0, block_penalty=0.0,
                         oversight_steps=400, total_steps=800, checkpoint_every=400,
                         hyperparams={"n_envs": 4, "backend": "dummy"})
    rows = {row["condition"]: row for row in run_experiment(config, tmp_path / "run", progress=False)}
    for condition, penalty in (("penalty_only", -1.0), ("hirl", 0.0)):
        episodes = read_rows(tmp_path / "run" / "runs" / condition / "seed-0" / "episodes.csv")
        blocks = sum(int(r["blocks"]) for r in episodes)
        assert blocks > 0, f"{condition}: a near-random agent meets the rule within 800 steps"
        assert sum(float(r["penalties"]) for r in episodes) == penalty * blocks
        assert {r["phase"] for r in episodes} >= ({"oversight", "blocker"} if condition == "hirl" else {"training"})
    assert rows["hirl"]["catastrophes"] == 0
    assert main(["experiment", "--game", "pong", "--block-penalty", "nan", "--out", str(tmp_path / "x")]) == 2


def test_resume_carries_on_only_the_conditions_asked_for_and_refuses_settings_it_would_ignore(tmp_path, capsys):
    """``--resume DIR --conditions C --workers N`` goes on with C's runs alone (the others keep their steps, and the
    report still shows them); a condition the folder has no runs of, and a setting the saved config fixes, are
    refused by name instead of ignored."""
    run = tmp_path / "run"
    run_experiment(tiny_config(agent="a2c", conditions=["none", "penalty_only"], oversight_steps=200,
                               total_steps=400, checkpoint_every=200, hyperparams={"n_envs": 4, "backend": "dummy"}),
                   run, progress=False)
    steps = {c: json.loads((run / "runs" / c / "seed-0" / "summary.json").read_text())["steps"]
             for c in ("none", "penalty_only")}
    assert main(["experiment", "--resume", str(run), "--total-steps", "800", "--conditions", "none", "--workers", "1",
                 "--no-progress", "--json"]) == 0
    rows = {row["condition"]: row for row in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]}
    assert rows["none"]["steps"] >= 800 and rows["penalty_only"]["steps"] == steps["penalty_only"] < 800
    for flags, named in ((["--conditions", "hirl"], "hirl"), (["--game", "space_invaders"], "--game"),
                         (["--penalty", "0", "--seeds", "2"], "--penalty, --seeds")):
        assert main(["experiment", "--resume", str(run), *flags, "--no-progress"]) == 2
        assert named in capsys.readouterr().err


def test_bad_experiment_settings_fail_with_one_clear_message(tmp_path, capsys):
    assert main(["experiment", "--game", "pong", "--oversight-steps", "500", "--total-steps", "400",
                 "--out", str(tmp_path / "a")]) == 2
    assert "--oversight-steps" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text("game: pong\nlearning_rate: 3\n")
    assert main(["experiment", "--config", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "bad.yml" in capsys.readouterr().err
    assert main(["experiment", "--resume", str(tmp_path / "nothing")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["experiment", "--conditions", "hirl,yolo", "--out", str(tmp_path / "c")]) == 2
    assert "yolo" in capsys.readouterr().err


@pytest.mark.slow
def test_a3c_hirl_labels_in_every_worker_and_hands_over_to_the_blocker(tmp_path):
    config = tiny_config(agent="a3c", conditions=("hirl",), oversight_steps=1000, total_steps=1600,
                         hyperparams={"n_workers": 2, "lstm": True})
    row = run_experiment(config, tmp_path / "run", progress=False)[0]
    folder = tmp_path / "run" / "runs" / "hirl" / "seed-0"
    stores = sorted(p.name for p in (folder / "labels").iterdir())
    assert stores == ["worker-0", "worker-1"]
    assert row["steps"] == 1600 and row["human_labels"] == 1000 == row["blocker"]["labels"]
    assert row["catastrophes_during_human"] == 0
    episodes = read_rows(folder / "episodes.csv")
    assert {r["phase"] for r in episodes} == {"oversight", "blocker"}
    # every checkpoint, the handover and the end stop both workers: each cuts the game it was in, if any (short games
    # here), and the summary counts whole games
    cut = [r for r in episodes if r["cut"] == "1"]
    assert {r["phase"] for r in cut} == {"oversight", "blocker"}
    assert row["episodes"] == len(episodes) - len(cut)


def test_resume_with_a_larger_budget_carries_finished_runs_on_from_their_checkpoints(tmp_path, capsys):
    """``--resume DIR --total-steps N`` raises a finished experiment's budget: each run goes on from its last
    checkpoint (its steps, counters and rows kept), the config records the budget it had; a smaller budget, and an
    off-policy run whose replay buffer was deleted at the end, are refused in one line."""
    run = tmp_path / "run"
    hyperparams = {"n_envs": 4, "backend": "dummy"}
    run_experiment(tiny_config(agent="a2c", conditions=["none"], oversight_steps=200, total_steps=400,
                               checkpoint_every=200, hyperparams=hyperparams), run, progress=False)
    folder = run / "runs" / "none" / "seed-0"
    before = json.loads((folder / "summary.json").read_text())
    episodes_before = read_rows(folder / "episodes.csv")
    assert 400 <= before["steps"] < 800

    assert main(["experiment", "--resume", str(run), "--total-steps", "800", "--no-progress", "--json"]) == 0
    after = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"][0]
    assert 800 <= after["steps"] < 1200, "it went on to the new budget, not from scratch"
    assert after["catastrophes"] >= before["catastrophes"] and after["episodes"] > before["episodes"]
    assert read_rows(folder / "episodes.csv")[:len(episodes_before)] == episodes_before, "earlier rows are kept"
    steps = [int(r["step"]) for r in read_rows(folder / "curve.csv")]
    assert steps == sorted(steps) and steps[-1] >= 800
    config = json.loads((run / "config.json").read_text())
    assert config["total_steps"] == config["config"]["total_steps"] == 800 and config["extended_from"] == [400]

    assert main(["experiment", "--resume", str(run), "--total-steps", "600", "--no-progress"]) == 2
    assert "can only be raised" in capsys.readouterr().err

    dqn = tmp_path / "dqn"
    run_experiment(tiny_config(conditions=["none"], oversight_steps=200, total_steps=400, checkpoint_every=400,
                               hyperparams={**TINY, "learning_starts": 100}), dqn, progress=False)
    assert main(["experiment", "--resume", str(dqn), "--total-steps", "800", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "replay buffer" in err and len(err.strip().splitlines()) == 1


def test_a_run_carried_past_its_budget_drops_its_old_summary_until_it_finishes_again(tmp_path, monkeypatch, capsys):
    """A finished run that goes on to a larger budget and is interrupted is unfinished: the report must not show its
    smaller budget's summary as the run's result."""
    import saferl.experiment.run as run_module

    run = tmp_path / "run"
    run_experiment(tiny_config(agent="a2c", conditions=["none"], oversight_steps=200, total_steps=400,
                               checkpoint_every=200, hyperparams={"n_envs": 4, "backend": "dummy"}), run,
                   progress=False)
    folder = run / "runs" / "none" / "seed-0"
    assert json.loads((folder / "summary.json").read_text())["steps"] < 800

    save = run_module.save_checkpoint

    def interrupt_after_saving(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C right after the extended run's first checkpoint

    monkeypatch.setattr(run_module, "save_checkpoint", interrupt_after_saving)
    assert main(["experiment", "--resume", str(run), "--total-steps", "800", "--no-progress"]) == 130
    saved = json.loads((folder / "checkpoint" / "state.json").read_text())["totals"]["steps"]
    assert 400 < saved < 800, "stopped inside the new budget"
    assert not (folder / "summary.json").exists()
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    assert "no finished runs" in capsys.readouterr().err


@pytest.mark.slow
def test_a_lookahead_human_phase_hands_over_to_a_stacked_blocker_that_replaces_as_it_did(tmp_path):
    """``overseer: lookahead`` with ``prefer``, ``blocker: {color: gray, stack: 2}``: the envs run in process while
    the overseer simulates them, the Blocker sees two gray frames, and its phase replaces blocks with the same
    preference."""
    config = tiny_config(agent="a2c", game="pong_no_sticky", conditions=["hirl"], overseer="lookahead",
                         overseer_options={"prefer": [0]}, oversight_steps=800, total_steps=1200,
                         hyperparams={"n_envs": 4},
                         blocker={"epochs": 2, "color": "gray", "stack": 2, "novelty": False, "allow_degenerate": True})
    row = run_experiment(config, tmp_path / "run", progress=False)[0]
    folder = tmp_path / "run" / "runs" / "hirl" / "seed-0"
    assert row["steps"] >= 1200 and row["catastrophes"] == 0
    preprocessing = load_scorer(folder / "blocker").preprocessing
    assert (preprocessing.color, preprocessing.stack) == ("gray", 2)
    assert [phase.spec.options for phase in phases(config, "hirl", folder)] == [{"prefer": [0]}, {"prefer": [0]}]
    assert {r["phase"] for r in read_rows(folder / "episodes.csv")} == {"oversight", "blocker"}
    for bad in ({"stack": 0}, {"color": "sepia"}):
        with pytest.raises(SaferlError, match="blocker options"):
            tiny_config(blocker=bad)
