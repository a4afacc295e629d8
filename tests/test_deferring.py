"""The deferring overseer: it asks where its Blocker ensemble is unsure, and only the answers become labels."""

import numpy as np
import pytest

from helpers import last_json, record_labels, saferl
from saferl.blocker.deferring import DeferralConfig, DeferringOverseer, sketch
from saferl.env.ale import game_action_names
from saferl.errors import SaferlError
from saferl.experiment import ExperimentConfig, run_experiment
from saferl.games import GameState, get_game
from saferl.labels.store import LabelStore
from saferl.oversight import ScriptedOverseer, StepContext
from saferl.oversight.envs import make_vec_env
from saferl.registry import make_overseer

PONG = get_game("pong")
ACTIONS = game_action_names(PONG)


class Members:
    """A stand-in ensemble: every frame gets the same member logits (K x n_actions)."""

    game = "pong"
    threshold_logit = 0.0

    def __init__(self, logits):
        self.table = np.array(logits, float)

    @property
    def members(self):
        """The members, each thresholded where the ensemble is."""
        return [type("Member", (), {"threshold_logit": self.threshold_logit})() for _ in self.table]

    def member_logits(self, inputs, actions):
        return np.repeat(self.table[:, None, :], len(inputs), axis=1)

    def logits(self, inputs, actions):
        """The mean member logit of each proposed action (as ``Ensemble.logits``)."""
        return self.table.mean(axis=0)[actions]


class Counting(ScriptedOverseer):
    """The scripted rule at 2 s a decision, remembering what it was asked."""

    def __init__(self):
        super().__init__(seconds_per_decision=2.0)
        self.asked = []

    def review_batch(self, contexts, actions):
        self.asked += list(actions)
        return super().review_batch(contexts, actions)


def context(frame_value=0, episode=0, step=0):
    frame = np.full((210, 160, 3), frame_value, np.uint8)
    return StepContext(game=PONG, state=GameState(np.zeros(128, np.uint8), 3, frame), episode=episode, step=step)


def deferring_with(table, **config):
    asker = Counting()
    overseer = DeferringOverseer(asker, "pong", ACTIONS, DeferralConfig(**{"novelty": 0.0, **config}))
    overseer.ensemble = Members(table)
    from saferl.blocker import BlockerOverseer

    overseer._view = BlockerOverseer(overseer.ensemble)
    return overseer, asker


def test_it_asks_where_the_members_disagree_and_decides_itself_where_they_agree():
    # Both members pass NOOP firmly; they split on LEFT (action 3); both block FIRE firmly.
    members = [[-6.0, 6.0, -6.0, -4.0, -6.0, -6.0], [-6.0, 6.0, -6.0, 4.0, -6.0, -6.0]]
    overseer, asker = deferring_with(members, disagreement=0.05, band=1.0)
    decisions = overseer.review_batch([context(), context(), context()], [0, 3, 1])
    assert asker.asked == [3], "only the action the members disagree on goes to the asker"
    assert [d.label for d in decisions] == [False, True, False]
    assert [d.seconds for d in decisions] == [0.0, 2.0, 0.0], "the person's time is spent on the asked one only"
    assert not decisions[0].block and decisions[2].block and decisions[2].safe_action == 2
    assert overseer.stats()["asked_disagreement"] == 1 and overseer.asked == 1 and overseer.decided == 2


def test_with_ask_blocks_below_one_it_blocks_some_unsure_decisions_unasked_but_asks_every_unsure_pass():
    # The members split on LEFT (action 3, mean logit 0.5: a block) and on FIRE (action 1, mean -0.5: a pass).
    members = [[-6.0, -4.0, -6.0, -3.0, -6.0, -6.0], [-6.0, 3.0, -6.0, 4.0, -6.0, -6.0]]
    overseer, asker = deferring_with(members, disagreement=0.05, band=0.0, ask_blocks=0.25)
    decisions = overseer.review_batch([context(step=k) for k in range(400)], [3, 1] * 200)
    unsure_blocks = [d for d, a in zip(decisions, [3, 1] * 200) if a == 3]
    assert asker.asked.count(1) == 200, "an unsure pass is always asked: it could be a catastrophe"
    assert 25 < asker.asked.count(3) < 75, "about a quarter of the unsure blocks are asked"
    assert all(d.block for d in unsure_blocks if not d.label), "the rest are blocked, unasked"
    assert overseer.stats()["blocked_unasked"] == 200 - asker.asked.count(3)


def test_it_asks_near_the_threshold_and_in_novel_states():
    near, _ = deferring_with([[0.5] * 6, [0.5] * 6], band=1.0)
    assert near.review(context(), 0).label and near.stats()["asked_near_threshold"] == 1
    far, _ = deferring_with([[-5.0] * 6, [-5.0] * 6], band=1.0, novelty=1.0)
    far._memory, far._radius = sketch(far.preprocessing.frames(np.zeros((1, 210, 160, 3), np.uint8))), 0.1
    assert not far.review(context(0), 0).label, "a frame it has seen is decided by the ensemble"
    assert far.review(context(200), 0).label, "a frame unlike every labelled one is asked"
    assert far.stats()["asked_novel"] == 1


def test_a_retraining_puts_the_previous_ensemble_on_probation_and_asks_the_passes_it_would_have_blocked(monkeypatch):
    """The first ensemble blocks NOOP firmly; a retraining (``fit``, with the CNN training replaced by an ensemble
    that passes NOOP and blocks FIRE: a real one takes minutes here) hands over to the new one. For ``probation``
    decisions after it, a NOOP (a pass the previous ensemble would have blocked) goes to the asker; then the
    previous ensemble is let go and NOOP passes unasked."""
    import saferl.blocker

    overseer, asker = deferring_with([[6.0, -6.0, -6.0, -6.0, -6.0, -6.0]] * 2, band=1.0, probation=4)
    assert not overseer.review(context(), 0).label and overseer.review(context(), 0).block, "the first one blocks"
    new = Members([[-6.0, 6.0, -6.0, -6.0, -6.0, -6.0]] * 2)
    trained_on = []
    monkeypatch.setattr(saferl.blocker, "train_ensemble", lambda data, *_, **__: trained_on.append(len(data)) or new)
    frames = overseer.preprocessing.frames(np.zeros((60, 210, 160, 3), np.uint8))
    for k, frame in enumerate(frames):  # 12 stretches of play, 5 examples each, FIRE blocked in each
        overseer._examples.add(frame, k % 5, k % 5 == 1, episode=k // 5, segment=0)
    assert overseer.fit() and overseer.fits == 1 and trained_on and overseer.ensemble is new
    decisions = overseer.review_batch([context(step=k) for k in range(3)], [0, 1, 0])
    assert asker.asked == [0, 0] and [d.label for d in decisions] == [True, False, True]
    assert decisions[1].block, "the new ensemble blocks FIRE itself"
    assert overseer.stats()["asked_regression"] == 2
    overseer.review_batch([context(step=k) for k in range(3, 6)], [0, 0, 0])  # the 4th decision is still on probation
    assert len(asker.asked) == 5
    later = overseer.review_batch([context(step=k) for k in range(6, 9)], [0, 0, 0])
    assert len(asker.asked) == 5 and not any(d.label or d.block for d in later), "probation over: NOOP passes"
    with pytest.raises(SaferlError, match="probation"):
        DeferralConfig(probation=-2)


def test_with_probation_minus_one_the_previous_ensemble_is_consulted_until_the_next_retraining():
    overseer, asker = deferring_with([[-6.0] * 6, [-6.0] * 6], band=1.0, probation=-1)
    overseer._previous = Members([[6.0, -6.0, -6.0, -6.0, -6.0, -6.0]] * 2)
    overseer._probation_left = -1
    for k in range(0, 30, 3):
        overseer.review_batch([context(step=k + i) for i in range(3)], [0, 1, 0])
    assert asker.asked == [0] * 20, "every pass the previous ensemble would block is asked, however long it runs"
    assert overseer._previous is not None


def test_with_split_votes_it_asks_where_one_member_would_block_and_another_pass_however_close_their_odds():
    # Threshold logit -3 (block probability 0.047): on LEFT one member says 0.12, the other 0.007. The spread of
    # the probabilities (0.057) is under ``disagreement`` and the mean logit (-3.5) is outside the band.
    members = [[-8.0, -8.0, -8.0, -2.0, -8.0, -8.0], [-8.0, -8.0, -8.0, -5.0, -8.0, -8.0]]
    quiet, quiet_asker = deferring_with(members, disagreement=0.1, band=0.25)
    loud, loud_asker = deferring_with(members, disagreement=0.1, band=0.25, split_votes=True)
    for overseer in (quiet, loud):
        overseer.ensemble.threshold_logit = -3.0
    assert not quiet.review(context(), 3).label and quiet_asker.asked == [], "without split votes the ensemble passes"
    assert loud.review(context(), 3).label and loud_asker.asked == [3]
    assert not loud.review(context(), 0).label, "where both members pass firmly it still decides itself"
    assert loud.stats()["asked_disagreement"] == 1


def test_the_novelty_radius_is_measured_against_other_stretches_of_play():
    """Frames of one segment are near copies: the radius is the distance to the nearest labelled frame of
    another segment, so a frame like the labelled ones in between is not novel, one beyond them is."""
    overseer, _ = deferring_with([[-5.0] * 6, [-5.0] * 6], novelty=1.0)
    noise = np.random.default_rng(0).integers(0, 2, size=(40, 1, 105, 80), dtype=np.uint8)
    segments = np.repeat(np.arange(4), 10)
    frames = (noise + 40 * segments[:, None, None, None]).astype(np.uint8)  # segment s: gray 40 s, +- 1
    overseer._calibrate_novelty(frames, segments)
    step = 40 / 255 * np.sqrt(26 * 20)  # one segment's step of 40 gray levels across the 26 x 20 sketch
    assert overseer._radius == pytest.approx(step, rel=0.05), "the step between segments, not the noise within one"
    assert not overseer._novel(np.full((1, 1, 105, 80), 60, np.uint8))[0]
    assert overseer._novel(np.full((1, 1, 105, 80), 250, np.uint8))[0]


def test_before_any_blocker_every_decision_is_asked():
    overseer = DeferringOverseer(Counting(), "pong", ACTIONS, DeferralConfig(first_fit=1000))
    decisions = overseer.review_batch([context(step=k) for k in range(4)], [0, 1, 2, 3])
    assert all(d.label and d.seconds == 2.0 for d in decisions) and overseer.asked == 4 and overseer.ensemble is None


def test_a_first_ensemble_that_cannot_be_made_yet_is_tried_again_after_100_labels():
    """Labels from too few stretches of play make no ensemble; waiting refit_every labels would ask all of them."""
    overseer = DeferringOverseer(Counting(), "pong", ACTIONS, DeferralConfig(first_fit=4, refit_every=10_000))
    tries, fit = [], overseer.fit
    overseer.fit = lambda: tries.append(len(overseer._examples)) or fit()
    for k in range(0, 108, 4):
        overseer.review_batch([context(step=k + j) for j in range(4)], [0, 1, 2, 3])
    assert overseer.ensemble is None and tries == [4, 104] and overseer.asked == 108


@pytest.mark.slow
def test_after_a_catastrophe_it_asks_about_the_decisions_it_made_itself_before_it(tmp_path):
    """Real Pong, the paddle driven up and then down; the stand-in ensemble passes everything firmly, so nothing
    is asked until the paddle enters the bottom zone. Then the last 5 decisions (the catastrophe's included) go to
    the asker: stored in order, counted as labels and seconds of that step, and kept to train on. The env's next
    catastrophe (the paddle stays in the zone) asks only about the one decision made since."""
    overseer, asker = deferring_with([[-6.0] * 6, [-6.0] * 6], band=1.0, hindsight=5)
    with LabelStore.create(tmp_path / "labels", "pong", ACTIONS) as store:
        venv = make_vec_env(PONG, n_envs=2, overseer=overseer, label_store=store, seed=0, preprocess=False,
                            backend="dummy")
        venv.reset()
        for step in range(200):
            infos = venv.step(np.full(2, 2 if step < 10 else 3))[3]  # RIGHT moves the right paddle up, LEFT down
            if any(info["catastrophe"] for info in infos):
                break
        assert step > 10
        assert [info["hindsight_labels"] for info in infos] == [5 * info["catastrophe"] for info in infos]
        records = store.arrays()
        assert len(store) == 5 * sum(info["catastrophe"] for info in infos) == overseer.asked
        assert records["blocked"][4], "the rule blocks the step into the zone: the ensemble's false negative"
        assert (np.diff(records["step"][:5]) == 1).all() and len(set(records["episode"][:5])) == 1, \
            "one env's last 5 steps, in order"
        again = venv.step(np.full(2, 3))[3]
        venv.close()
        assert [info["hindsight_labels"] for info in again] == [
            (1 if before["catastrophe"] else 5) * after["catastrophe"] for before, after in zip(infos, again)]
        assert len(store) == venv.counters.totals["labels"] == overseer.asked == overseer.stats()["asked_hindsight"]
        assert venv.counters.totals["human_seconds"] == 2.0 * len(store)
        assert overseer._examples.blocked == store.arrays()["blocked"].tolist(), "kept to train on, in store order"
    assert overseer.review_hindsight([], []) == []


@pytest.mark.parametrize("options, says", [({"members": 1}, "members"), ({"asker": "none"}, "asker"),
                                           ({"asker": "blocker:x"}, "asker"), ({"band": -1.0}, "band"),
                                           ({"first_fit": 0}, "first_fit"), ({"colour": 1}, "colour"),
                                           ({"ask_blocks": 1.5}, "ask_blocks"), ({"hindsight": -1}, "hindsight"),
                                           ({"hindsight": 4, "asker": "lookahead"}, "hindsight")])
def test_bad_options_name_themselves(options, says):
    with pytest.raises(SaferlError, match=says):
        make_overseer("deferring", 0, "pong", **options)


@pytest.mark.slow
def test_on_pong_it_trains_stops_asking_everything_and_stores_only_the_answers(tmp_path):
    """8 envs of random play: everything is asked until the first ensemble (after 400 labels); then it decides
    most steps itself (measured: about 95% of them). The label store holds exactly the asked decisions, and they are
    the rule's answers."""
    overseer = make_overseer("deferring", 0, "pong", first_fit=400, refit_every=10_000, members=2, updates=500,
                             asker_options={"seconds_per_decision": 0.5})
    with LabelStore.create(tmp_path / "labels", "pong", ACTIONS) as store:
        venv = make_vec_env(PONG, n_envs=8, overseer=overseer, label_store=store, seed=1, preprocess=False)
        venv.reset()
        rng = np.random.default_rng(1)
        for _ in range(150):
            venv.step(rng.integers(6, size=8))
        totals = dict(venv.counters.totals)
        venv.close()
        stored = store.arrays()
    stats = overseer.stats()
    assert stats["fits"] == 1 and stats["decided"] > 0.5 * (totals["steps"] - 400)
    assert stats["asked"] + stats["decided"] == totals["steps"] == 1200
    assert len(stored["blocked"]) == stats["asked"] == totals["labels"] < totals["steps"]
    assert totals["human_seconds"] == pytest.approx(0.5 * stats["asked"])
    assert stored["blocked"].sum() > 0


@pytest.mark.slow
def test_an_experiment_with_the_deferring_overseer_counts_only_the_asked_labels(tmp_path):
    options = {"first_fit": 400, "refit_every": 10_000, "members": 2, "updates": 500,
               "asker_options": {"seconds_per_decision": 0.5}}
    config = ExperimentConfig.from_dict(dict(
        game="pong", agent="dqn", overseer="deferring", overseer_options=options, conditions=["hirl"],
        oversight_steps=1600, total_steps=2000, checkpoint_every=2000,
        hyperparams={"n_envs": 8, "buffer_size": 2000, "learning_starts": 200, "exploration_fraction": 1.0},
        env={"max_num_frames_per_episode": 320}, blocker={"epochs": 3, "margin": 0.6}))
    # The margin makes the handover Blocker block 60% of what its teacher passed: the alarm stops the handover.
    with pytest.raises(SaferlError, match="ALARM.*degenerate.*--allow-degenerate-blocker"):
        run_experiment(config, tmp_path / "run", progress=False)
    row, = run_experiment(None, tmp_path / "run", resume=True, progress=False, allow_degenerate_blocker=True)
    assert "degenerate" in row["blocker"]["alarm"]
    with LabelStore.open(tmp_path / "run" / "runs" / "hirl" / "seed-0" / "labels") as store:
        assert row["human_labels"] == len(store) < row["handover_step"]
    assert row["human_seconds"] == pytest.approx(0.5 * row["human_labels"])
    assert row["blocker"]["labels"] == row["human_labels"], "phase 2 trains on the asked labels"
    duty = row["human_phase_overseer"]
    assert duty["asked"] == row["human_labels"] and duty["asked"] + duty["decided"] == row["handover_step"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Human labour" in report and "## The overseer on duty" in report
    assert "degenerate" in report, "the report shows the alarm"


@pytest.mark.slow
def test_replaying_a_watch_all_store_estimates_the_labels_and_misses_of_deferring(tmp_path):
    """A run that asked the rule about every decision, replayed through the deferring overseer: everything is
    asked until the first ensemble, then it decides most decisions itself; with no ensemble it asks them all."""
    with LabelStore.create(tmp_path / "watch-all", "pong", ACTIONS) as store:
        venv = make_vec_env(PONG, n_envs=8, overseer=ScriptedOverseer(seconds_per_decision=0.5), label_store=store,
                            seed=1, preprocess=False)
        venv.reset()
        rng = np.random.default_rng(1)
        for _ in range(150):
            venv.step(rng.integers(6, size=8))
        venv.close()
        blocks = int(store.arrays()["blocked"].sum())
        late_blocks = int(store.arrays()["blocked"][400:].sum())  # the first 400 are asked: none can be missed
    options = ["--overseer-option", "members=2", "--overseer-option", "updates=500", "--overseer-option",
               "refit_every=10000", "--envs", "8", "--no-progress", "--json"]
    deferring = last_json(saferl("replay-deferring", str(tmp_path / "watch-all"), "--overseer-option", "first_fit=400",
                                 *options))
    assert deferring["decisions"] == 1200 and deferring["blocks"] == blocks > 0
    assert deferring["fits"] == 1 and deferring["asked"] + deferring["decided"] == 1200
    assert 400 <= deferring["asked"] < 0.6 * 1200, "all asked until the first ensemble; most decided after it"
    assert deferring["asked_share_per_2000"] == [round(deferring["asked"] / 1200, 3)]
    assert deferring["missed_blocks"] <= late_blocks < blocks, "only decisions made after the first fit can miss"
    assert deferring["missed_blocks"] + deferring["false_positives"] <= deferring["decided"]
    everything = last_json(saferl("replay-deferring", str(tmp_path / "watch-all"), "--overseer-option",
                                  "first_fit=5000", *options))
    assert everything["asked"] == 1200 and everything["missed_blocks"] == everything["false_positives"] == 0
    bad = saferl("replay-deferring", str(tmp_path / "watch-all"), "--envs", "0", check_rc=2)
    assert "--envs" in bad.stderr and "Traceback" not in bad.stderr
    bad = saferl("replay-deferring", str(tmp_path / "watch-all"), "--limit", "0", check_rc=2)
    assert "--limit" in bad.stderr and "Traceback" not in bad.stderr
    bad = saferl("replay-deferring", str(tmp_path / "watch-all"), "--overseer-option", "colour=1", check_rc=2)
    assert "colour" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_a_resumed_run_recalls_the_labels_it_asked_for_and_trains_on_them(tmp_path):
    """Given its run's label store back (as a resumed run does), the deferring overseer takes the stored labels
    as asked examples and trains its ensemble on them, instead of asking everything again from scratch; a
    relabel in the store reaches its next fit."""
    with LabelStore.create(tmp_path / "labels", "pong", ACTIONS) as store:
        venv = make_vec_env(PONG, n_envs=8, overseer=ScriptedOverseer(), label_store=store, seed=1, preprocess=False)
        venv.reset()
        rng = np.random.default_rng(1)
        for _ in range(60):
            venv.step(rng.integers(6, size=8))
        venv.close()
    fresh = make_overseer("deferring", 0, "pong", first_fit=400, members=2, updates=100)
    with LabelStore.create(tmp_path / "empty", "pong", ACTIONS) as empty:
        fresh.label_store = empty
    assert fresh.ensemble is None and fresh.stats()["labels_kept"] == 0
    resumed = make_overseer("deferring", 0, "pong", first_fit=400, members=2, updates=500)
    with LabelStore.open(tmp_path / "labels", writable=True) as store:
        resumed.label_store = store
        seen, actions = store.frames(range(0, 480, 10)), store.arrays()["proposed_action"][::10].tolist()
        assert resumed.stats()["labels_kept"] == 480 and resumed.fits == 1 and resumed.ensemble is not None
        assert resumed.stats()["asked"] == 0, "recalled labels are not asked again"
        contexts = [StepContext(game=PONG, state=GameState(np.zeros(128, np.uint8), 3, frame)) for frame in seen]
        decisions = resumed.review_batch(contexts, actions)
        assert not all(d.label for d in decisions), "on frames like those it recalled it decides some itself"
        corrected = make_overseer("deferring", 0, "pong", first_fit=400, members=2, updates=20,  # what it trains
                                  probation=100)                                               # on is the point
        corrected.label_store = store
        first, ensemble = corrected._examples.blocked[0], corrected.ensemble
        assert corrected._previous is None, "no probation after the first ensemble: nothing came before it"
        store.relabel(0, not first, "person")  # a person's undo corrects a stored answer
        corrected.fit()
        assert corrected._examples.blocked[0] == (not first) and corrected.fits == 2, "the next fit takes it"
        assert corrected._previous is ensemble and corrected._probation_left == 100, "the new one is on probation"


def test_prior_labels_of_an_earlier_run_train_the_first_ensemble_before_anything_is_asked(tmp_path):
    """``prior``: the labels of an earlier run of the game train the first ensemble at once, so a short human phase
    is not spent asking everything; they are not asked, not stored again, and the live store's relabels still
    reach the right examples. A prior of another game is refused."""
    record_labels(tmp_path / "earlier", n_envs=8, steps=60, seed=1)
    overseer = make_overseer("deferring", 0, "pong", first_fit=400, members=2, updates=1000,
                             prior=str(tmp_path / "earlier"))
    assert overseer.fits == 0, "building it (as a config check does) trains nothing"
    with LabelStore.create(tmp_path / "live", "pong", ACTIONS) as live:
        overseer.label_store = live  # as an agent gives it its run's store
        venv = make_vec_env(PONG, n_envs=8, overseer=overseer, label_store=live, seed=2, preprocess=False)
        venv.reset()
        rng = np.random.default_rng(2)
        for _ in range(40):
            venv.step(rng.integers(6, size=8))
        venv.close()
        asked = overseer.stats()["asked"]
        assert overseer.stats()["prior_labels"] == 480 and overseer.fits == 1, "trained on the prior, before step 1"
        assert 0 < len(live) == asked < 0.5 * 320, "from the first step it decides most states itself"
        assert overseer.stats()["labels_kept"] == 480 + asked
        first = overseer._examples.blocked[480]
        live.relabel(0, not first, "person")
        overseer._take_relabels()  # what the next fit starts with
        assert overseer._examples.blocked[480] == (not first), "the live store's relabel, not a prior label"
    with pytest.raises(SaferlError, match="pong"):
        make_overseer("deferring", 0, "space_invaders", prior=str(tmp_path / "earlier"))


@pytest.mark.slow
def test_an_experiment_started_from_prior_labels_hands_over_to_a_blocker_trained_on_them_too(tmp_path):
    """With ``prior``, the person is asked only where the prior-trained ensemble is unsure, and the handover
    Blocker learns from everything the person has said about the game: the prior labels and the asked ones."""
    record_labels(tmp_path / "earlier", n_envs=8, steps=60, seed=1)
    options = {"members": 2, "updates": 1000, "prior": str(tmp_path / "earlier")}
    config = ExperimentConfig.from_dict(dict(
        game="pong", agent="dqn", overseer="deferring", overseer_options=options, conditions=["hirl"],
        oversight_steps=800, total_steps=960, checkpoint_every=960,
        hyperparams={"n_envs": 8, "buffer_size": 2000, "learning_starts": 200, "exploration_fraction": 1.0},
        env={"max_num_frames_per_episode": 320}, blocker={"epochs": 3, "allow_degenerate": True}))
    row, = run_experiment(config, tmp_path / "run", progress=False)
    duty = row["human_phase_overseer"]
    assert duty["prior_labels"] == 480 and duty["asked"] == row["human_labels"] < 0.5 * row["handover_step"]
    assert row["blocker"]["labels"] == 480 + row["human_labels"], "phase 2 trains on the prior and asked labels"
