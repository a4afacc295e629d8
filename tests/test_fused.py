"""The fused pass of an ensemble's members gives what each member's own pass gives, on real frames."""

import copy

import numpy as np
import pytest
import torch

from saferl.blocker import ModelConfig, new_blocker
from saferl.blocker.ensemble import Ensemble
from saferl.blocker.fused import FusedNets
from saferl.blocker.novelty import Novelty
from saferl.env.ale import make_ale_env
from saferl.games import get_game


def real_frames(game_name: str, count: int, seed: int = 0) -> np.ndarray:
    """``count`` RGB frames of random play on the real ROM, a few steps apart."""
    game = get_game(game_name)
    env = make_ale_env(game, seed=seed)
    rng = np.random.default_rng(seed)
    frames = []
    env.reset(seed=seed)
    while len(frames) < count:
        for _ in range(5):
            frame, *_ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(frame)
    env.close()
    return np.stack(frames)


def members(game_name: str, k: int = 3, model_config: ModelConfig | None = None) -> list:
    actions = [f"A{i}" for i in range(6)]  # Pong and Space Invaders have 6 actions each
    return [new_blocker(game_name, actions, model_config=model_config, seed=seed) for seed in range(k)]


def one_by_one(ensemble: Ensemble, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, views = zip(*(member.action_logits_and_features(inputs) for member in ensemble.members))
    return np.stack(logits), np.stack(views)


@pytest.mark.parametrize("game_name", ["pong", "space_invaders"])
def test_the_fused_pass_gives_every_members_logits_and_views(game_name):
    """Pong's small CNN (2 convolutions) and Space Invaders' larger one (6 convolutions, 16 filters): a wrong
    member grouping, flattening order or action column changes the logits far beyond float rounding."""
    ensemble = Ensemble(members(game_name))
    inputs = ensemble.preprocessing.frames(real_frames(game_name, 8))
    logits, views = ensemble._member_passes(inputs)
    assert ensemble._fused is not None, "a review's batch runs fused"
    expected_logits, expected_views = one_by_one(ensemble, inputs)
    assert logits.shape == expected_logits.shape == (3, 8, 6)
    assert views.shape == expected_views.shape
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(views, expected_views, atol=1e-4, rtol=1e-4)
    assert np.ptp(logits, axis=1).max() > 1e-3, "the frames differ, so do their logits"


def test_weights_changed_in_place_are_seen_and_large_batches_run_member_by_member():
    ensemble = Ensemble(members("pong"))
    inputs = ensemble.preprocessing.frames(real_frames("pong", 8, seed=1))
    before = ensemble.action_logits(inputs)
    with torch.no_grad():
        for parameter in ensemble.members[1].net.parameters():
            parameter.mul_(1.5)  # what an optimizer step does: in place
    after = ensemble.action_logits(inputs)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, one_by_one(ensemble, inputs)[0].mean(axis=0), atol=1e-4, rtol=1e-4)
    replaced = copy.deepcopy(ensemble.members[2].net)
    with torch.no_grad():
        for parameter in replaced.parameters():
            parameter.mul_(0.5)
    ensemble.members[2].net = replaced  # a member whose net is swapped for another (a refit, a load)
    swapped = ensemble.action_logits(inputs)
    assert np.abs(swapped - after).max() > 1e-3
    np.testing.assert_allclose(swapped, one_by_one(ensemble, inputs)[0].mean(axis=0), atol=1e-4, rtol=1e-4)
    after = swapped
    many = np.concatenate([inputs] * 9)  # 72 inputs: beyond a review's size
    np.testing.assert_allclose(ensemble.action_logits(many), np.concatenate([after] * 9), atol=1e-4, rtol=1e-4)


def test_members_of_different_shapes_run_one_by_one_with_the_same_results():
    wide = ModelConfig(convs=2, filters=8, fc=(10, 10))
    mixed = Ensemble(members("pong", 2) + members("pong", 1, wide))
    assert FusedNets.fuse([member.net for member in mixed.members]) is None
    inputs = mixed.preprocessing.frames(real_frames("pong", 4))
    np.testing.assert_allclose(mixed.member_logits(inputs, None), one_by_one(mixed, inputs)[0], atol=1e-6)


def test_the_novelty_check_reads_the_fused_views():
    """A memory made of the members' own views of these frames: none is novel; moved far away, all are."""
    ensemble = Ensemble(members("pong"))
    inputs = ensemble.preprocessing.frames(real_frames("pong", 8, seed=2))
    views = one_by_one(ensemble, inputs)[1].astype(np.float32)
    ensemble.novelty = Novelty(list(views), [1e-2] * 3)
    assert not ensemble.assess(inputs)[1].any()
    ensemble.novelty = Novelty([view + 100.0 for view in views], [1e-2] * 3)
    assert ensemble.assess(inputs)[1].all()

