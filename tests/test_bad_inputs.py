"""Bad input, as a careless or hostile user gives it, through the real saferl command: each case must exit with
code 2 and one line on stderr that names the argument or file, print no traceback, and leave no file behind
(every file of the test's world keeps its bytes, and nothing new appears)."""

import hashlib
import json
import shutil

import pytest

from helpers import saferl
from saferl.cli import main
from saferl.files import with_digest


def edit_json(path, digest=False, **changes):
    """Set fields of the JSON object in ``path`` (and forge its digest when ``digest``)."""
    data = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps(with_digest(data) if digest else data))


@pytest.fixture(scope="module")
def world(tmp_path_factory, labels, trained):
    """Real inputs to damage: the session's Pong labels and Blocker, a Space Invaders store, tampered Blockers,
    broken configs and run folders."""
    root = tmp_path_factory.mktemp("world")
    shutil.copytree(labels, root / "labels", ignore=shutil.ignore_patterns(".done", "*.lock"))
    shutil.copytree(trained[0], root / "blocker", ignore=shutil.ignore_patterns(".done", "*.lock"))
    saferl("oversee", "--game", "space_invaders", "--steps", "60", "--out", str(root / "si-labels"), "--no-progress")
    for name in ("nan-threshold", "relabelled", "forged-nan", "deep", "huge-cnn"):
        shutil.copytree(root / "blocker", root / name)
    edit_json(root / "nan-threshold" / "member-0" / "blocker.json", threshold_logit=float("nan"))
    edit_json(root / "relabelled" / "ensemble.json", game="space_invaders")
    edit_json(root / "forged-nan" / "ensemble.json", digest=True, threshold_logit=float("inf"))
    (root / "deep" / "ensemble.json").write_text("[" * 50_000 + "]" * 50_000)
    edit_json(root / "huge-cnn" / "member-0" / "blocker.json", digest=True,
              model={"convs": 2, "filters": 4, "fc": [10**9, 10], "dropout": 0.5})
    (root / "a-file").write_text("not a folder\n")
    (root / "empty").mkdir()
    (root / "lots.yml").write_text("total_steps: lots\n")
    (root / "list.yml").write_text("- pong\n- dqn\n")
    (root / "bad-yaml.yml").write_text("game: [pong\n")
    (root / "damaged-run").mkdir()
    (root / "damaged-run" / "config.json").write_text("{not json")
    (root / "bad-sweep.yml").write_text("grid: 3\n")
    return root


def snapshot(root):
    """Every file under ``root`` with the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# (arguments, a word the message must hold). {w} is the world folder, {o} a folder that must not be created.
CASES = [
    (["games", "--bogus"], "--bogus"),
    (["oversee", "--game", "chess"], "chess"),
    (["oversee", "--game", "pong", "--seed", "-1"], "--seed"),
    (["oversee", "--game", "pong", "--steps", "0"], "--steps"),
    (["oversee", "--game", "pong", "--steps", "many"], "--steps"),
    (["oversee", "--game", "pong", "--overseer", "wizard"], "wizard"),
    (["oversee", "--game", "pong", "--overseer", "blocker:"], "blocker:DIR"),
    (["oversee", "--game", "pong", "--overseer", "blocker:{w}/nowhere"], "nowhere"),
    (["oversee", "--game", "pong", "--overseer", "blocker:{w}/nan-threshold"], "digest"),
    (["oversee", "--game", "pong", "--overseer", "blocker:{w}/relabelled"], "digest"),
    (["oversee", "--game", "pong", "--overseer", "blocker:{w}/forged-nan"], "threshold_logit"),
    (["oversee", "--game", "pong", "--overseer", "blocker:{w}/deep"], "nests"),
    (["oversee", "--game", "pong", "--overseer", "blocker:{w}/huge-cnn"], "fc"),
    (["oversee", "--game", "space_invaders", "--overseer", "blocker:{w}/blocker"], "pong"),
    (["oversee", "--game", "pong", "--policy", "lean:JUMP:0.5"], "JUMP"),
    (["oversee", "--game", "pong", "--mode", "sideways"], "--mode"),
    (["oversee", "--game", "pong", "--penalty", "nan"], "--penalty"),
    (["oversee", "--game", "pong", "--pace", "10"], "--pace"),
    (["oversee", "--game", "pong", "--steps", "5", "--out", "{w}/a-file"], "a-file"),
    (["oversee", "--game", "space_invaders", "--steps", "5", "--out", "{w}/labels"], "pong"),
    (["labels", "{w}/a-file"], "a-file"),
    (["labels", "{w}/nowhere"], "nowhere"),
    (["labels", "{w}/empty"], "empty"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--learning-rate", "-1"], "--learning-rate"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--epochs", "0"], "--epochs"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--folds", "1"], "--folds"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--margin", "1.5"], "margin"),
    (["train-blocker", "{w}/labels", "--game", "chess", "--out", "{o}"], "chess"),
    (["train-blocker", "{w}/nowhere", "--game", "pong", "--out", "{o}"], "nowhere"),
    (["train-blocker", "{w}/labels", "--game", "space_invaders", "--out", "{o}"], "pong"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--batch-size", "-3"], "--batch-size"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--device", "tpu"], "tpu"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--filters", "600"], "--filters"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--fc", "10,0"], "--fc"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{o}", "--fc", "10,x"], "--fc"),
    (["train-blocker", "{w}/labels", "--game", "pong", "--out", "{w}/a-file"], "a-file"),
    (["eval-blocker", "{w}/nowhere", "{w}/labels"], "nowhere"),
    (["eval-blocker", "{w}/nan-threshold", "{w}/labels"], "digest"),
    (["eval-blocker", "{w}/forged-nan", "{w}/labels"], "threshold_logit"),
    (["eval-blocker", "{w}/blocker", "{w}/si-labels"], "space_invaders"),
    (["eval-blocker", "{w}/blocker", "{w}/nowhere"], "nowhere"),
    (["experiment", "--out", "{o}", "--total-steps", "lots"], "--total-steps"),
    (["experiment", "--out", "{o}", "--hyperparam", "bogus_param=3"], "bogus_param"),
    (["experiment", "--out", "{o}", "--hyperparam", "buffer_size=-5"], "buffer_size"),
    (["experiment", "--out", "{o}", "--hyperparam", "noequals"], "KEY=VALUE"),
    (["experiment", "--out", "{o}", "--blocker-epochs", "0"], "--blocker-epochs"),
    (["experiment", "--out", "{o}", "--overseer", "wizard"], "wizard"),
    (["experiment", "--out", "{o}", "--penalty", "nan"], "penalty"),
    (["experiment", "--out", "{o}", "--overseer-option", "bogus=1"], "bogus"),
    (["experiment", "--out", "{o}", "--agent", "sarsa"], "sarsa"),
    (["experiment", "--out", "{o}", "--conditions", "none,magic"], "magic"),
    (["experiment", "--out", "{o}", "--oversight-steps", "500", "--total-steps", "100"], "--oversight-steps"),
    (["experiment", "--config", "{w}/lots.yml", "--out", "{o}"], "total_steps"),
    (["experiment", "--config", "{w}/list.yml", "--out", "{o}"], "list.yml"),
    (["experiment", "--config", "{w}/bad-yaml.yml", "--out", "{o}"], "bad-yaml.yml"),
    (["experiment", "--config", "{w}/nowhere.yml", "--out", "{o}"], "nowhere.yml"),
    (["experiment", "--resume", "{w}/nowhere"], "nowhere"),
    (["experiment", "--resume", "{w}/damaged-run"], "config.json"),
    (["experiment", "--game", "pong"], "--out"),
    (["replay-deferring", "{w}/nowhere"], "nowhere"),
    (["replay-deferring", "{w}/labels", "--overseer-option", "bogus=1"], "bogus"),
    (["replay-deferring", "{w}/labels", "--envs", "0"], "--envs"),
    (["sweep", "{w}/nowhere.yml", "--out", "{o}"], "nowhere.yml"),
    (["review", "{w}/nowhere"], "nowhere"),
    (["review", "{w}/labels", "--blocker", "{w}/nowhere"], "nowhere"),
    (["attack-blocker", "{w}/blocker", "--game", "pong", "--method", "laser", "--out", "{o}"], "laser"),
    (["attack-blocker", "{w}/nowhere", "--game", "pong", "--method", "shift", "--out", "{o}"], "nowhere"),
    (["attack-blocker", "{w}/blocker", "--game", "space_invaders", "--method", "shift", "--out", "{o}"], "pong"),
    (["attack-blocker", "{w}/blocker", "--game", "pong", "--method", "shift", "--policies", "{w}/nowhere",
      "--out", "{o}"], "nowhere"),
    (["evaluate", "{w}/nowhere", "--game", "pong"], "nowhere"),
    (["evaluate", "{w}/blocker", "--game", "pong"], "no saved agent"),
    (["evaluate", "{w}/blocker", "--game", "pong", "--episodes", "0"], "--episodes"),
    (["report", "{w}/nowhere"], "nowhere"),
    (["report", "{w}/damaged-run"], "config.json"),
]


@pytest.mark.parametrize("args, says", CASES, ids=[" ".join(args)[:60] for args, _ in CASES])
def test_bad_input_gets_one_clear_line_exit_2_and_leaves_no_file(world, tmp_path, capsys, args, says):
    out = tmp_path / "out"
    argv = [arg.replace("{w}", str(world)).replace("{o}", str(out)) for arg in args]
    before = snapshot(world)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("saferl"), lines[0]
    assert says in lines[0], lines[0]
    assert snapshot(world) == before
    assert not out.exists(), f"{out} was left behind"


def test_the_table_spans_every_command_and_at_least_40_inputs():
    usage = saferl("--help").stdout
    commands = set(usage[usage.index("{") + 1:usage.index("}")].split(","))
    assert {args[0] for args, _ in CASES} == commands
    assert len(CASES) >= 40
