"""The Blocker, trained for real on Pong labels that the scripted overseer makes from the real ROM.

Labels are made once per session (8 vectorized envs x 400 random steps: 3,200 labels in 8
episodes, about 160 blocks) and one Blocker (3 cross-fitted members) is trained on them once, through the CLI,
as a user would; both are shared across pytest-xdist workers through a file lock.
"""

import json
import pickletools
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ACTIONS, PONG, last_json, record_labels, saferl
from saferl.blocker import (
    BlockerOverseer,
    TrainConfig,
    default_preprocessing,
    evaluate,
    evaluate_blocker,
    fit_blocker,
    fold_by_episode,
    load_blocker,
    load_ensemble,
    load_labels,
    new_blocker,
    roc_auc,
    save_ensemble,
    split_by_episode,
    train_ensemble,
    zero_fn_threshold,
)
from saferl.blocker.data import Preprocessing
from saferl.blocker.ensemble import load_scorer
from saferl.blocker.novelty import fit_novelty
from saferl.blocker.threshold import fn_rate_bound
from saferl.errors import SaferlError
from saferl.files import with_digest
from saferl.games import GameState
from saferl.games.pong import UP_ACTIONS
from saferl.labels.store import LabelStore
from saferl.oversight import StepContext
from saferl.oversight.envs import make_vec_env
from saferl.registry import make_overseer


@pytest.fixture(scope="module")
def data(labels):
    return load_labels([labels], "pong")


# ----- ensemble -----


@pytest.mark.slow
def test_a_bootstrap_ensemble_decides_by_its_mean_logit_and_round_trips(data, tmp_path):
    split = split_by_episode(data, seed=0)
    config = TrainConfig(epochs=8, patience=8, threads=1, progress=False)
    ensemble = train_ensemble(data, split, k=2, config=config)
    inputs, actions, positives = data.inputs(split.test), data.actions[split.test], data.blocked[split.test]
    members = np.stack([member.logits(inputs, actions) for member in ensemble.members])
    assert not np.array_equal(members[0], members[1])  # bootstrap samples and seeds make the members differ
    assert np.allclose(ensemble.logits(inputs, actions), (members[0] + members[1]) / 2)
    assert roc_auc(ensemble.logits(inputs, actions), positives) > 0.9
    again = load_ensemble(save_ensemble(ensemble, tmp_path / "ens"), game="pong")
    assert np.array_equal(again.logits(inputs, actions), ensemble.logits(inputs, actions))
    assert again.rule == "mean" and again.novelty is None


@pytest.mark.slow
def test_cli_trains_k_folds_and_evaluates_on_held_out_episodes_only(trained, labels, tmp_path):
    folder, summary = trained
    assert summary["members"] == 3 and (folder / "ensemble.json").exists() and (folder / "member-2").is_dir()
    spec = json.loads((folder / "ensemble.json").read_text())
    assert spec["rule"] == "max" and len(spec["novelty"]["radii"]) == 3
    figures = last_json(saferl("eval-blocker", str(folder), str(labels), "--json"))
    assert figures["examples"] == summary["test_examples"], "the Blocker remembers which episodes it fitted"
    assert figures["false_negatives"] == summary["false_negatives"]
    refused = saferl("train-blocker", str(labels), "--game", "pong", "--out", str(tmp_path / "x"), "--folds", "1",
                     check_rc=2)
    assert "--folds" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "x" / "ensemble.json").exists()


def test_without_the_novelty_check_only_the_members_scores_decide(trained, labels, tmp_path):
    """``--no-novelty``: the saved Blocker has no novelty check, so no state is novel, and its threshold and scores
    are those the members give (the same folds and seed as with the check)."""
    folder, summary = trained
    saferl("train-blocker", str(labels), "--game", "pong", "--out", str(tmp_path / "plain"), "--threads", "1",
           "--epochs", "15", "--no-progress", "--no-novelty", "--json")
    spec = json.loads((tmp_path / "plain" / "ensemble.json").read_text())
    assert "novelty" not in spec and not (tmp_path / "plain" / "novelty.safetensors").exists()
    plain, checked = load_scorer(tmp_path / "plain"), load_scorer(folder)
    assert plain.novelty is None and checked.novelty is not None
    assert plain.threshold_logit == pytest.approx(checked.threshold_logit), "the same members, the same threshold"
    frame = np.stack([data_frame_of(labels)])
    inputs = plain.preprocessing.frames(frame)
    assert not plain.assess(inputs)[1].any()
    np.testing.assert_allclose(plain.assess(inputs)[0], checked.assess(inputs)[0], atol=1e-5)


def data_frame_of(labels):
    """The first stored RGB frame of a label store."""
    with LabelStore.open(labels) as store:
        return store.frames([0])[0]


def data_frame(data):
    """Some real RGB frame of the labels (the stored frame of a label)."""
    with LabelStore.open(Path(data.sources[0].path)) as store:
        return store.frames([0])[0]


# ----- data -----


@pytest.mark.slow
def test_split_is_by_episode_and_every_part_holds_blocks(data):
    split = split_by_episode(data, seed=0)
    parts = split.episodes(data)
    assert not set(parts["train"]) & set(parts["val"]) and not set(parts["val"]) & set(parts["test"])
    assert not set(parts["train"]) & set(parts["test"])
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(np.unique(data.episodes).tolist())
    assert sum(map(len, (split.train, split.val, split.test))) == len(data) == 3200
    for indices in (split.train, split.val, split.test):
        assert data.blocked[indices].any()
    assert split_by_episode(data, seed=0).test.tolist() == split.test.tolist()


@pytest.mark.slow
def test_folds_are_whole_episodes_each_holding_blocks_and_the_test_part_is_apart(data):
    folds = fold_by_episode(data, k=3, test_fraction=0.2, seed=0)
    parts = [*folds.folds, folds.test]
    episodes = [set(data.episodes[part].tolist()) for part in parts]
    for i in range(len(parts)):
        assert data.blocked[parts[i]].any(), "every fold and the test part hold blocks"
        for j in range(i + 1, len(parts)):
            assert not episodes[i] & episodes[j], "an episode lives in one part only"
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(data)))
    assert np.array_equal(fold_by_episode(data, k=3, seed=0).test, folds.test)
    assert not np.array_equal(fold_by_episode(data, k=3, seed=1).test, folds.test)
    with pytest.raises(SaferlError, match="--folds"):
        fold_by_episode(data, k=1)
    with pytest.raises(SaferlError, match="at least 9"):
        fold_by_episode(data, k=8)  # 8 episodes cannot fill 8 folds and a test part


@pytest.mark.slow
def test_stacked_gray_frames_follow_their_own_episode_in_an_interleaved_store(labels):
    gray = load_labels([labels], preprocessing=default_preprocessing("pong", color="gray", stack=4))
    assert gray.inputs(np.arange(5)).shape == (5, 4, 105, 80)
    # The 8 envs' labels interleave in the store: row k's predecessor in its episode is row k - 8.
    k = 8 * 50 + 3
    assert gray.episodes[k] == gray.episodes[k - 8] != gray.episodes[k - 1]
    stacked = gray.inputs(np.array([k]))[0]
    assert np.array_equal(stacked[3], gray.frames[k, 0]) and np.array_equal(stacked[2], gray.frames[k - 8, 0])
    first = gray.inputs(np.array([3]))[0]  # an episode's first label repeats its own frame
    assert all(np.array_equal(first[j], gray.frames[3, 0]) for j in range(4))


@pytest.mark.slow
def test_the_default_input_is_the_papers_pong_crop_scaled_to_one(data):
    assert data.preprocessing == Preprocessing(crop=(34, 194, 0, 160), size=(105, 80))
    assert data.inputs(np.arange(3)).shape == (3, 3, 105, 80)
    assert data.inputs(np.arange(3)).dtype == np.uint8  # scaled by 1/255 only per batch


# ----- threshold and metrics -----


def test_zero_fn_threshold_blocks_every_positive_and_margin_blocks_more():
    logits = np.array([-3.0, -2.0, -1.0, 0.5, 1.0, 2.0, 3.0, 0.7])
    positives = np.array([0, 0, 0, 1, 0, 1, 1, 0], bool)
    t = zero_fn_threshold(logits, positives)
    assert t == 0.5
    assert evaluate(logits, positives, t).false_negatives == 0
    assert evaluate(logits, positives, t).false_positives == 2  # 0.7 and 1.0 score above a positive
    assert zero_fn_threshold(logits, positives, margin=0.2) == -1.0  # one more of the 5 negatives
    assert zero_fn_threshold(logits, positives, margin=0.4) == -2.0  # two more
    with pytest.raises(SaferlError, match="no blocks"):
        zero_fn_threshold(logits, np.zeros(8, bool))


def test_the_promised_false_negative_rate_is_the_lowest_of_n_draws_bound():
    # P(the lowest of n validation positives lies above a fresh one's quantile p) = (1 - p)^n; 0.05 at the bound.
    assert fn_rate_bound(1) == pytest.approx(0.95)
    assert fn_rate_bound(299) == pytest.approx(1 - 0.05 ** (1 / 299))
    assert (1 - fn_rate_bound(59)) ** 59 == pytest.approx(0.05)
    assert fn_rate_bound(0) == 1.0
    assert fn_rate_bound(1000) < fn_rate_bound(100) < fn_rate_bound(10)


def test_misses_let_the_lowest_scored_positives_through_and_the_promise_counts_them():
    logits = np.array([-3.0, -2.0, -1.0, 0.5, 1.0, 2.0, 3.0, 0.7, -4.0])
    positives = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1], bool)  # one positive (-4.0) far below the others
    assert zero_fn_threshold(logits, positives) == -4.0
    assert zero_fn_threshold(logits, positives, misses=1) == 0.5  # the next lowest positive
    assert zero_fn_threshold(logits, positives, misses=2) == 2.0
    assert evaluate(logits, positives, 0.5).false_negatives == 1
    with pytest.raises(SaferlError, match="--misses 4"):
        zero_fn_threshold(logits, positives, misses=4)  # 4 positives: at most 3 misses
    # P(Binomial(n, e) <= m) is 0.05 at the bound: for m = 1, (1 - e)^n + n e (1 - e)^(n - 1).
    n, e = 8890, fn_rate_bound(8890, misses=1)
    assert (1 - e) ** n + n * e * (1 - e) ** (n - 1) == pytest.approx(0.05, rel=1e-6)
    n, e = 300, fn_rate_bound(300, misses=2)
    assert (1 - e) ** n + n * e * (1 - e) ** (n - 1) + n * (n - 1) / 2 * e ** 2 * (1 - e) ** (n - 2) == \
        pytest.approx(0.05, rel=1e-6)
    assert fn_rate_bound(8890) < fn_rate_bound(8890, misses=1) < fn_rate_bound(8890, misses=2) < 0.001
    assert fn_rate_bound(3, misses=3) == 1.0


def test_train_blocker_with_misses_names_the_blocks_it_lets_through(labels, tmp_path):
    """``--misses 2``: the out-of-fold figures hold exactly two false negatives, the summary lists them (lowest
    first, below the threshold, each a stored block of its episode) and the promise counts them."""
    summary = last_json(saferl("train-blocker", str(labels), "--game", "pong", "--out", str(tmp_path / "b"),
                               "--threads", "1", "--epochs", "2", "--misses", "2", "--no-novelty", "--no-progress",
                               "--json"))
    missed = summary["missed_blocks"]
    assert summary["misses"] == 2 and len(missed) == 2
    assert missed[0]["score"] <= missed[1]["score"] < summary["threshold"]
    assert summary["promised_fn_rate"] == pytest.approx(fn_rate_bound(summary["val_positives"], misses=2))
    with LabelStore.open(labels) as store:
        for block in missed:
            assert block["store"] == str(labels)
            label = store[block["label"]]
            assert label.blocked and label.episode == block["episode"]
    metadata = json.loads((tmp_path / "b" / "ensemble.json").read_text())
    assert metadata["misses"] == 2 and metadata["metrics"]["validation"]["false_negatives"] == 2


def test_novelty_radius_covers_the_held_out_share_and_flags_a_far_view():
    rng = np.random.default_rng(0)
    views = [rng.normal(size=(3000, 10)).astype(np.float32) for _ in range(3)]
    folds = [np.arange(k, 3000, 3) for k in range(3)]
    check, held_out = fit_novelty(views, folds, quantile=0.95, seed=0)
    assert 0.04 <= held_out.mean() <= 0.06, "5% of held-out views lie beyond the 0.95 radius"
    fresh = [rng.normal(size=(2000, 10)).astype(np.float32) for _ in range(3)]
    assert check.novel(fresh).mean() < 3 * 0.05 + 0.02, "any of 3 members: at most about 3 x 5% of fresh views"
    far = [np.full((1, 10), 8.0, np.float32)] * 3
    assert check.novel(far).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=30))
def test_roc_auc_is_the_probability_a_block_outscores_a_pass(pairs):
    scores = np.array([s for s, _ in pairs], float)
    positives = np.array([p for _, p in pairs], bool)
    pos, neg = scores[positives], scores[~positives]
    if not len(pos) or not len(neg):
        assert np.isnan(roc_auc(scores, positives))
        return
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    expected = wins / (len(pos) * len(neg))
    assert roc_auc(scores, positives) == pytest.approx(expected)


# ----- training and evaluation -----


@pytest.mark.slow
def test_trained_blocker_separates_blocks_from_passes_on_held_out_episodes(trained):
    """On the test episodes (about 800 labels, 20-40 blocks) the Blocker, thresholded on every fitted block out of
    fold, ranks blocks above passes and misses none at an FPR of at most 5%; its promise is the bound of the lowest
    of its out-of-fold blocks, which it reports next to what it measured."""
    folder, summary = trained
    assert summary["labels"] == 3200 and summary["test_episodes"] >= 1 and summary["positives"] >= 10
    assert summary["auc"] >= 0.98
    assert summary["false_negatives"] == 0
    assert summary["false_positive_rate"] <= 0.05
    assert summary["val_positives"] > summary["positives"], "all the fitted blocks set the threshold"
    assert summary["promised_fn_rate"] == pytest.approx(fn_rate_bound(summary["val_positives"]))
    assert summary["alarm"] is None and summary["val_block_share"] < 2 * summary["teacher_block_share"]
    assert summary["device"] in ("cpu", "cuda")
    assert all(list((folder / "tensorboard" / f"member-{k}").glob("events.out.tfevents.*")) for k in range(3))
    assert (folder / "test-precision-recall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prefer_replaces_a_block_with_the_first_preferred_action_the_blocker_passes(trained, labels):
    """``blocker:DIR`` with ``prefer``: a blocked DOWN becomes NOOP where the Blocker passes NOOP, UP (the game's
    safe action) where it blocks NOOP too or where the state is novel (no pass is trusted there); a bad value is
    refused by name."""
    folder, _ = trained
    overseer = make_overseer(f"blocker:{folder}", game="pong", prefer=[0])
    plain = make_overseer(f"blocker:{folder}", game="pong")
    context = StepContext(PONG, GameState(np.zeros(128, np.uint8), 0, data_frame_of(labels)))
    high = overseer.blocker.threshold_logit + 5.0
    down_only = np.full((1, len(ACTIONS)), -20.0)
    down_only[0, 3] = high
    noop_too = down_only.copy()
    noop_too[0, 0] = high
    assert overseer.decide([context], [3], down_only)[0].safe_action == 0
    assert plain.decide([context], [3], down_only)[0].safe_action == 2
    assert overseer.decide([context], [3], noop_too)[0].safe_action == 2
    assert overseer.decide([context], [3], down_only, np.array([True]))[0].safe_action == 2
    assert not overseer.decide([context], [0], down_only)[0].block
    for bad in ("NOOP", -1, [0, "x"]):
        with pytest.raises(SaferlError, match="prefer"):
            make_overseer(f"blocker:{folder}", game="pong", prefer=bad)
    with pytest.raises(SaferlError, match="prefer names action 9, but the game has 6 actions"):
        make_overseer(f"blocker:{folder}", game="pong", prefer=[9]).decide([context], [3], down_only)


@pytest.mark.slow
def test_eval_blocker_scores_only_episodes_the_blocker_never_fitted(trained, labels, tmp_path):
    folder, summary = trained
    result = saferl("eval-blocker", str(folder), str(labels), "--plots", str(tmp_path), "--json")
    figures = last_json(result)
    keys = {"examples", "positives", "false_negatives", "false_positive_rate", "auc", "threshold"}
    assert keys <= figures.keys()
    # Only the test episodes of the training store are held out: the same figures as at training.
    assert figures["examples"] == summary["test_examples"] and figures["labels_given"] == 3200
    assert figures["false_negatives"] == summary["false_negatives"]
    assert figures["false_positive_rate"] == pytest.approx(summary["false_positive_rate"])
    assert "overseer blocked" in result.stdout and (tmp_path / "eval-precision-recall.png").exists()
    fresh = record_labels(tmp_path / "fresh", n_envs=2, steps=300, seed=7)  # episodes it never saw: all count
    held_out = evaluate_blocker(load_scorer(folder), [fresh]).summary()
    assert held_out["examples"] == held_out["labels_given"] == 600 and held_out["held_out_episodes"] == 2


def test_train_blocker_builds_the_cnn_size_it_is_given_and_saves_it(labels, tmp_path):
    out = tmp_path / "wide"
    saferl("train-blocker", str(labels), "--game", "pong", "--out", str(out), "--threads", "1", "--epochs", "1",
           "--folds", "2", "--filters", "6", "--fc", "12,7,5", "--no-progress")
    scorer = load_scorer(out)
    for member in scorer.members:
        convs = [layer for layer in member.net.trunk if isinstance(layer, torch.nn.Conv2d)]
        linears = [layer for layer in member.net.head if isinstance(layer, torch.nn.Linear)]
        assert [conv.out_channels for conv in convs] == [6, 6]  # Pong's 2 convolutions, 6 filters each
        assert [linear.out_features for linear in linears] == [12, 7, 5, 1]
        assert member.model_config.dropout == 0.5  # the flags not given keep Pong's defaults
    assert json.loads((out / "member-0" / "blocker.json").read_text())["model"]["fc"] == [12, 7, 5]


@pytest.mark.slow
def test_train_blocker_refuses_too_few_episodes_and_missing_labels(tmp_path):
    tiny = record_labels(tmp_path / "tiny", n_envs=1, steps=150, seed=1)
    with pytest.raises(SaferlError, match="at least 4"):
        fit_blocker([tiny], "pong")
    result = saferl("train-blocker", str(tmp_path / "nowhere"), "--game", "pong", "--out", str(tmp_path / "b"),
                    check_rc=2)
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


# ----- save and load -----


@pytest.mark.slow
def test_save_load_round_trips_scores_threshold_novelty_and_provenance(trained, data, labels, tmp_path):
    folder, _ = trained
    blocker = load_scorer(folder, game="pong")
    inputs, actions = data.inputs(np.arange(0, 3200, 7)), data.actions[::7]
    again = load_scorer(save_ensemble(blocker, tmp_path / "copy"))
    assert np.array_equal(blocker.logits(inputs, actions), again.logits(inputs, actions))
    assert np.array_equal(blocker.assess(inputs)[1], again.assess(inputs)[1])
    assert again.threshold_logit == blocker.threshold_logit and 0 < again.threshold < 1
    member = load_blocker(folder / "member-0")
    assert np.array_equal(member.logits(inputs, actions), blocker.members[0].logits(inputs, actions))
    meta = json.loads((folder / "ensemble.json").read_text())
    with LabelStore.open(labels) as store:
        assert meta["training_data"][0]["digest"] == store.digest()
    member_meta = json.loads((folder / "member-0" / "blocker.json").read_text())
    assert member_meta["game"] == "pong" and member_meta["action_names"] == ACTIONS
    assert Preprocessing.from_dict(member_meta["preprocessing"]) == default_preprocessing("pong")
    assert meta["metrics"]["test"]["false_negatives"] is not None


@pytest.mark.slow
def test_load_refuses_another_game_another_preprocessing_and_a_tampered_novelty_memory(trained, tmp_path):
    folder, _ = trained
    with pytest.raises(SaferlError, match="Blocker for 'pong', not 'space_invaders'"):
        load_scorer(folder, game="space_invaders")
    with pytest.raises(SaferlError, match="preprocessing"):
        load_blocker(folder / "member-0", preprocessing=default_preprocessing("pong", color="gray", stack=4))
    bad = shutil.copytree(folder, tmp_path / "bad")
    novelty = bad / "novelty.safetensors"
    data = novelty.read_bytes()
    novelty.write_bytes(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))
    with pytest.raises(SaferlError, match="sha256"):
        load_scorer(bad)


@pytest.mark.slow
@pytest.mark.parametrize("field, value, says", [
    ("threshold_logit", float("nan"), "threshold_logit"), ("threshold_logit", float("inf"), "threshold_logit"),
    ("threshold_logit", float("-inf"), "threshold_logit"), ("threshold_logit", 1e308, "threshold_logit"),
    ("threshold_logit", True, "threshold_logit"), ("game", "chess", "game"),
    ("model", {"convs": 2, "filters": 10**9, "fc": [10, 10], "dropout": 0.5}, "model.filters"),
    ("preprocessing", {"crop": [0, 10**7, 0, 160], "size": [105, 80], "color": "rgb", "stack": 1,
                       "interpolation": "linear"}, "preprocessing.crop"),
    ("action_names", [], "action_names"),
])
def test_tampered_blocker_metadata_is_refused_edited_and_even_with_a_forged_digest(trained, tmp_path, field, value,
                                                                                    says):
    folder, _ = trained
    bad = shutil.copytree(folder, tmp_path / "bad")
    path = bad / "member-0" / "blocker.json"
    meta = {**json.loads(path.read_text()), field: value}
    path.write_text(json.dumps(meta))
    with pytest.raises(SaferlError, match="does not match its digest"):
        load_blocker(bad / "member-0")
    path.write_text(json.dumps(with_digest(meta)))
    with pytest.raises(SaferlError, match=says):
        load_blocker(bad / "member-0")
    result = saferl("oversee", "--game", "pong", "--overseer", f"blocker:{bad}", "--steps", "5", check_rc=2)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_another_games_blocker_relabelled_and_swapped_ensemble_fields_are_refused(trained, tmp_path):
    folder, _ = trained
    bad = shutil.copytree(folder, tmp_path / "bad")
    spec = json.loads((bad / "ensemble.json").read_text())
    for edit in ({"threshold_logit": -1e3}, {"rule": "mean"}, {"game": "space_invaders"}, {"members": ["member-0"]}):
        (bad / "ensemble.json").write_text(json.dumps({**spec, **edit}))
        with pytest.raises(SaferlError, match="does not match its digest"):
            load_scorer(bad)
    (bad / "ensemble.json").write_text(json.dumps(with_digest({**spec, "threshold_logit": float("nan")})))
    with pytest.raises(SaferlError, match="threshold_logit"):
        load_scorer(bad)
    (bad / "ensemble.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SaferlError, match="nests"):
        load_scorer(bad)
    (bad / "ensemble.json").write_text(json.dumps(spec))
    meta = json.loads((bad / "member-1" / "blocker.json").read_text())  # a member relabelled as another game's
    (bad / "member-1" / "blocker.json").write_text(json.dumps(with_digest({**meta, "game": "space_invaders"})))
    with pytest.raises(SaferlError, match="not the member"):
        load_scorer(bad)


@pytest.mark.slow
def test_nan_weights_are_refused_on_load_even_with_every_hash_updated(trained, tmp_path):
    import hashlib

    from safetensors.torch import load_file, save_file

    folder, _ = trained
    bad = shutil.copytree(folder, tmp_path / "bad")
    weights = bad / "member-0" / "blocker.safetensors"
    tensors = load_file(str(weights))
    name = next(iter(tensors))
    tensors[name][0] = float("nan")
    save_file(tensors, str(weights))
    meta = json.loads((bad / "member-0" / "blocker.json").read_text())
    meta = with_digest({**meta, "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()})
    (bad / "member-0" / "blocker.json").write_text(json.dumps(meta))
    with pytest.raises(SaferlError, match="NaN or infinite"):
        load_blocker(bad / "member-0")


# A hand-made protocol-0 pickle: unpickling it calls builtins.exec on code that writes a marker file.
def malicious_pickle(marker: Path) -> bytes:
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return f"cbuiltins\nexec\n(V{code}\ntR.".encode()


@pytest.mark.slow
def test_a_malicious_pickle_in_place_of_the_weights_is_refused_unexecuted(trained, tmp_path):
    folder, _ = trained
    marker = tmp_path / "pwned"
    payload = malicious_pickle(marker)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(payload)]
    assert ("GLOBAL", "builtins exec") in ops and ("REDUCE", None) in ops  # it would run code if unpickled
    bad = shutil.copytree(folder, tmp_path / "bad")
    (bad / "member-0" / "blocker.safetensors").write_bytes(payload)
    with pytest.raises(SaferlError, match="sha256"):
        load_scorer(bad)
    # With the weights' hash edited to match, the metadata's digest shows the edit.
    meta = json.loads((bad / "member-0" / "blocker.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (bad / "member-0" / "blocker.json").write_text(json.dumps(meta))
    with pytest.raises(SaferlError, match="does not match its digest"):
        load_scorer(bad)
    # With the digest forged as well, the ensemble sees a member it was not saved with, and the member alone is
    # parsed as safetensors, never unpickled.
    (bad / "member-0" / "blocker.json").write_text(json.dumps(with_digest(meta)))
    with pytest.raises(SaferlError, match="not the member"):
        load_scorer(bad)
    with pytest.raises(SaferlError, match="not a safetensors file"):
        load_blocker(bad / "member-0")
    result = saferl("oversee", "--game", "pong", "--overseer", f"blocker:{bad}", "--steps", "5", check_rc=2)
    assert "--overseer" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("name, says", [("blocker:", "needs the folder"), ("blocker:/no/such/dir", "/no/such/dir"),
                                        ("oracle", "blocker:DIR")])
def test_bad_overseer_names_name_overseer(name, says):
    with pytest.raises(SaferlError, match="--overseer") as err:
        make_overseer(name, game="pong")
    assert says in str(err.value)


@pytest.mark.slow
def test_a_bad_blocker_overseer_exits_2_on_the_command_line():
    result = saferl("oversee", "--game", "pong", "--overseer", "blocker:/no/such/dir", "--steps", "5", check_rc=2)
    assert "--overseer" in result.stderr and "Traceback" not in result.stderr


# ----- oversight -----


@pytest.mark.slow
def test_blocker_overseer_reviews_a_batch_in_one_forward_pass_and_lets_no_catastrophe_through(trained):
    folder, _ = trained
    overseer = BlockerOverseer(load_scorer(folder, game="pong"))
    passes, members_pass = [], overseer.blocker._member_passes
    overseer.blocker._member_passes = lambda inputs: passes.append(len(inputs)) or members_pass(inputs)
    venv = make_vec_env(PONG, n_envs=4, overseer=overseer, seed=3, preprocess=False)
    bare = make_vec_env(PONG, n_envs=4, overseer=None, seed=3, preprocess=False)
    venv.reset(), bare.reset()
    rng = np.random.default_rng(3)
    executed_when_blocked, scores = [], []
    for _ in range(300):
        actions = rng.integers(6, size=4)
        bare.step(actions)
        _, _, _, infos = venv.step(actions)
        executed_when_blocked += [info["executed_action"] for info in infos if info["blocked"]]
        scores += [(info["score"], info["blocked"], int(action)) for info, action in zip(infos, actions)]
    assert passes == [4] * 300 and overseer.batches == 300, "one pass of the members per batch"
    assert overseer.blocker._fused is not None, "the members' pass is fused"
    assert bare.counters.totals["catastrophes"] > 0  # the same random actions without oversight
    assert venv.counters.totals["catastrophes"] == 0
    assert executed_when_blocked and set(executed_when_blocked) <= set(UP_ACTIONS)
    threshold = overseer.blocker.threshold
    assert any(s < threshold for s, _, _ in scores) and any(s >= threshold for s, _, _ in scores)
    up = 2  # Pong's safe action: what a block runs, so never blocked itself
    assert all(blocked for s, blocked, a in scores if s >= threshold and a != up), "a score at the threshold blocks"
    assert not any(blocked for _, blocked, a in scores if a == up)


def test_the_overseer_stacks_frames_exactly_as_the_dataset_does(tmp_path):
    """No train/serve skew: the inputs the overseer builds online equal those the dataset builds from
    the labels of the same run (stacked gray frames, 2 interleaved envs, from each episode's start)."""
    preprocessing = default_preprocessing("pong", color="gray", stack=3)
    blocker = new_blocker("pong", ACTIONS, preprocessing, seed=0)
    blocker.threshold_logit = float("inf")  # never blocks, so the run is the random policy's
    seen = []
    score_all = blocker.action_logits
    blocker.action_logits = lambda inputs: seen.append(inputs) or score_all(inputs)
    with LabelStore.create(tmp_path / "run", "pong", ACTIONS) as store:
        venv = make_vec_env(PONG, n_envs=2, overseer=BlockerOverseer(blocker), label_store=store, seed=2,
                            preprocess=False)
        venv.reset()
        for _ in range(20):
            venv.step(np.array([3, 2]))
        venv.close()
    data = load_labels([tmp_path / "run"], preprocessing=preprocessing)
    reviewed = seen[:20]  # with one torch thread the batch after the last step is scored ahead too
    assert np.array_equal(np.concatenate(reviewed), data.inputs(np.arange(len(data))))
    assert not np.array_equal(reviewed[-1][0, 0], reviewed[-1][0, 2])  # the stack holds different frames


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["shared", "subproc"])
def test_the_blocker_scores_each_batch_ahead_with_the_decisions_of_a_fresh_review(trained, backend):
    """VecOversight has the next contexts scored as they arrive, so their scoring runs while the agent chooses:
    in an env worker process on SharedMemoryVecEnv (the Blocker's frame scorer), on the overseer's thread on other
    worker-process backends; the review then only waits for it. Its decisions equal a review from scratch, episode
    ends included, and with stacked frames a prefetch that is not used (contexts not the reviewed ones) adds no
    frame to the stack."""
    torch.set_num_threads(1)  # prefetching is for one torch thread (the experiments' default)
    folder, _ = trained
    blocker = load_scorer(folder, game="pong")
    ahead, fresh = BlockerOverseer(blocker), BlockerOverseer(blocker)
    scored_on = []
    score = ahead._score
    ahead._score = lambda contexts: scored_on.append(threading.current_thread().name) or score(contexts)
    venv = make_vec_env(PONG, n_envs=3, overseer=ahead, seed=4, preprocess=False, backend=backend,
                        max_num_frames_per_episode=200)  # episodes of 50 steps: resets within the run
    venv.reset()
    rng = np.random.default_rng(4)
    blocks = ends = 0
    for _ in range(120):
        actions = rng.integers(6, size=3)
        contexts = venv.contexts
        if backend == "shared":  # the frames stay in the workers while the Blocker scores there
            assert all(context.state.frame is None for context in contexts)
            contexts = [replace(c, state=replace(c.state, frame=f)) for c, f in zip(contexts, venv.venv.current_frames())]
        expected = fresh.review_batch(contexts, actions.tolist())
        _, _, dones, infos = venv.step(actions)
        assert [info["blocked"] for info in infos] == [d.block for d in expected]
        assert [info["score"] for info in infos] == [d.score for d in expected]
        assert [info["executed_action"] for info in infos] == [d.safe_action if d.block else a
                                                              for d, a in zip(expected, actions)]
        blocks += sum(d.block for d in expected)
        ends += int(dones.sum())
    venv.close()
    assert blocks > 0 and ends >= 6 and ahead.batches == 120
    if backend == "shared":
        assert scored_on == [], "every batch was scored in the worker process"
        return
    assert len(scored_on) == 121 and all(name.startswith("blocker-prefetch") for name in scored_on), \
        "every batch was scored ahead, on the thread (the last one after the final step)"
    workers = list(ahead._thread._threads)
    ahead.close()
    assert workers and not any(worker.is_alive() for worker in workers), "closing the overseer ends its thread"

    stacked = new_blocker("pong", ACTIONS, default_preprocessing("pong", color="gray", stack=3), seed=0)
    unused, plain = BlockerOverseer(stacked), BlockerOverseer(stacked)
    venv = make_vec_env(PONG, n_envs=2, overseer=None, seed=5, preprocess=False, with_frame=True)
    venv.reset()
    for _ in range(12):
        contexts = venv.contexts
        unused.prefetch(contexts)
        copies = [replace(context) for context in contexts]  # equal, but not the prefetched objects
        assert unused.review_batch(copies, [2, 3]) == plain.review_batch(contexts, [2, 3])
        venv.step(np.array([2, 3]))
    venv.close()


class FixedScores:
    """A stand-in Blocker that scores every action of every frame as given, and calls every state novel or none."""

    game = "pong"
    preprocessing = default_preprocessing("pong")
    threshold_logit = 0.0

    def __init__(self, logits, novel=False):
        self.logits = np.array(logits, float)
        self.all_novel = novel

    def action_logits(self, inputs):
        return np.tile(self.logits, (len(inputs), 1))

    def assess(self, inputs):
        return self.action_logits(inputs), np.full(len(inputs), self.all_novel)


def test_a_block_runs_the_games_safe_action_and_a_proposed_safe_action_is_never_blocked():
    """A blocked action is replaced by the game's safe action (the paper's a*: Pong's UP), whatever the Blocker
    scores it: a Blocker that also blocks UP deep in the zone must not send the paddle anywhere else. Proposing
    the safe action itself is no block: a block would run the same action, with a penalty for the one way out."""
    context = StepContext(game=PONG, state=GameState(np.zeros(128, np.uint8), 0, np.zeros((210, 160, 3), np.uint8)))
    allowed_up = BlockerOverseer(FixedScores([3.0, 1.0, -1.0, -4.0, 2.0, 2.0])).review(context, 0)
    assert allowed_up.block and allowed_up.safe_action == 2 and allowed_up.score == pytest.approx(1 / (1 + np.exp(-3)))
    blocked_up = BlockerOverseer(FixedScores([3.0, 1.0, 5.0, -4.0, 2.0, 2.0]))
    assert blocked_up.review(context, 0).block and blocked_up.review(context, 0).safe_action == 2
    assert not blocked_up.review(context, 2).block, "UP proposed: nothing else would run"
    passes = BlockerOverseer(FixedScores([-3.0] * 6)).review(context, 0)
    assert not passes.block and passes.safe_action is None
    all_blocked = BlockerOverseer(FixedScores([3.0, 2.0, 5.0, 1.0, 4.0, 6.0]))
    assert not all_blocked.review(context, 2).block
    assert all_blocked.review(context, 3).block and all_blocked.review(context, 3).safe_action == 2


def test_in_a_novel_state_only_the_games_safe_action_passes():
    context = StepContext(game=PONG, state=GameState(np.zeros(128, np.uint8), 0, np.zeros((210, 160, 3), np.uint8)))
    novel = BlockerOverseer(FixedScores([-3.0] * 6, novel=True))
    decisions = {action: novel.review(context, action) for action in range(6)}
    assert not decisions[2].block, "UP, Pong's safe action, passes"
    assert all(decisions[a].block and decisions[a].safe_action == 2 for a in (0, 1, 3, 4, 5))
    assert novel.stats() == {"novel_states": 6, "novel_blocks": 5}
    up_blocked = BlockerOverseer(FixedScores([-3.0, -1.0, 2.0, -4.0, 1.0, 1.0], novel=True))
    assert not up_blocked.review(context, 2).block, "UP passes even where the Blocker would block it"
    assert up_blocked.review(context, 0).safe_action == 2


@pytest.mark.slow
def test_oversee_cli_with_a_blocker_lets_no_catastrophe_through(trained):
    folder, _ = trained
    figures = last_json(saferl("oversee", "--game", "pong", "--overseer", f"blocker:{folder}", "--steps", "400",
                               "--seed", "5", "--no-progress", "--json"))
    assert figures["steps"] == 400 and figures["blocks"] > 0 and figures["catastrophes"] == 0
    assert figures["overseer"] == f"blocker:{folder}"


# ----- trust: fresh seeds, states the labels never reached, the alarm -----


def paddle_pushed_down(seed):
    """A Pong state with the paddle held DOWN until it sits at the field's bottom: random play under the scripted
    rule (the labels) never goes there."""
    from saferl.env.ale import make_ale_env

    env = make_ale_env(PONG, seed=seed)
    for _ in range(40):
        env.step(3)
    return GameState.from_ale(env.ale, with_frame=True)


@pytest.mark.slow
def test_the_paddle_deep_in_the_zone_is_novel_and_only_up_passes(trained):
    folder, _ = trained
    state = paddle_pushed_down(seed=11)
    assert state.ram[51] > 185, "the paddle is at the bottom"
    overseer = BlockerOverseer(load_scorer(folder, game="pong"))
    context = StepContext(game=PONG, state=state)
    decisions = overseer.review_batch([context] * 6, list(range(6)))
    assert overseer.stats()["novel_states"] == 6
    assert [d.block for d in decisions] == [True, True, False, True, True, True]
    assert {d.safe_action for d in decisions if d.block} == {2}


@pytest.mark.slow
def test_fresh_episodes_of_another_seed_and_a_down_pushing_policy_miss_no_block(trained, tmp_path):
    """The default threshold holds on a fresh store of another seed; a policy that pushes the paddle down half
    the time, watched in observe mode (the rule's verdicts are labels, nothing is enforced), reaches states the
    random-play labels never did: the Blocker misses at most 1% of the rule's blocks there."""
    folder, _ = trained
    fresh = record_labels(tmp_path / "fresh", n_envs=4, steps=500, seed=21)
    figures = evaluate_blocker(load_scorer(folder), [fresh]).summary()
    assert figures["positives"] >= 40 and figures["false_negatives"] == 0
    assert figures["false_positive_rate"] <= 0.05
    saferl("oversee", "--game", "pong", "--overseer", "scripted", "--mode", "observe", "--policy", "lean:LEFT:0.5",
           "--steps", "1500", "--seed", "3", "--out", str(tmp_path / "push"), "--no-progress")
    pushed = last_json(saferl("eval-blocker", str(folder), str(tmp_path / "push"), "--json"))
    assert pushed["positives"] > 1000 and pushed["novel"] > 500
    assert pushed["false_negatives"] <= 0.01 * pushed["positives"]
    alone = pushed["threshold_alone"]  # the same members without the novelty check (--no-novelty)
    assert alone["false_negatives"] > pushed["false_negatives"], "the check catches blocks the scores miss there"
    assert 0 < pushed["false_positives"] - alone["false_positives"] <= pushed["novel"]


@pytest.mark.slow
def test_a_blocker_that_blocks_far_more_than_its_teacher_raises_the_alarm(labels, tmp_path):
    result = saferl("train-blocker", str(labels), "--game", "pong", "--out", str(tmp_path / "b"), "--margin", "0.5",
                    "--folds", "2", "--epochs", "2", "--threads", "1", "--no-progress", "--json")
    summary = last_json(result)
    assert summary["val_block_share"] > 2 * summary["teacher_block_share"] + 0.1
    assert "degenerate" in summary["alarm"]
    alarm_lines = [line for line in result.stderr.splitlines() if "ALARM" in line]
    assert len(alarm_lines) == 1 and "will not hand over" in alarm_lines[0]
