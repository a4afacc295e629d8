"""Test helpers: the saferl command as a user runs it, labels recorded on the real Pong ROM, and session-wide
artefacts built once whichever xdist worker gets there first."""

import json
import shutil
import subprocess
import sys

import numpy as np
from filelock import FileLock

from saferl.games import get_game
from saferl.labels.store import LabelStore
from saferl.oversight import ScriptedOverseer
from saferl.oversight.envs import make_vec_env

PONG = get_game("pong")
ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]


def saferl(*args, check_rc=0):
    """Run ``saferl ARGS`` in a subprocess; assert its exit code."""
    result = subprocess.run([sys.executable, "-m", "saferl.cli", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == check_rc, result.stderr
    return result


def last_json(result):
    """The JSON object on the last line of a ``--json`` run's output."""
    return json.loads(result.stdout.strip().splitlines()[-1])


def record_labels(path, n_envs, steps, seed):
    """Random play in ``n_envs`` Pong envs under the scripted overseer; every step becomes a label."""
    with LabelStore.create(path, "pong", ACTIONS) as store:
        venv = make_vec_env(PONG, n_envs=n_envs, overseer=ScriptedOverseer(), label_store=store, seed=seed,
                            preprocess=False)
        venv.reset()
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            venv.step(rng.integers(len(ACTIONS), size=n_envs))
        venv.close()
    return path


def once(path, build):
    """Build ``path`` once per session, whichever worker gets there first."""
    with FileLock(f"{path}.lock"):
        if not (path / ".done").exists():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            (path / ".done").touch()
    return path
