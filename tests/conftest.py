"""Shared test set-up: headless pygame, and the session's Pong labels and Blocker (built once for all workers)."""

import json
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pytest  # noqa: E402

from helpers import last_json, once, record_labels, saferl  # noqa: E402


@pytest.fixture(scope="session")
def shared(tmp_path_factory, worker_id):
    """A folder shared by all xdist workers of this session."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def labels(shared):
    """A label store of random Pong play under the scripted overseer (8 envs x 400 steps, seed 0)."""
    return once(shared / "blocker-pong-labels", lambda p: record_labels(p, n_envs=8, steps=400, seed=0))


@pytest.fixture(scope="session")
def trained(shared, labels):
    """(Blocker folder, the train-blocker --json summary) trained on :func:`labels`."""

    def build(out):
        result = saferl("train-blocker", str(labels), "--game", "pong", "--out", str(out), "--threads", "1",
                        "--epochs", "15", "--no-progress", "--json")
        (out / "train.json").write_text(json.dumps(last_json(result)))

    out = once(shared / "blocker-pong", build)
    return out, json.loads((out / "train.json").read_text())


BUILT_ONCE = {"labels", "trained"}


def pytest_collection_modifyitems(items):
    """A test that needs the session's labels or Blocker is slow: building them takes a minute or more."""
    for item in items:
        if BUILT_ONCE & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
