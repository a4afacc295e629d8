"""The human oversight window, driven headless (SDL dummy driver) by real pygame key events on real Pong frames."""

import json
import threading

import numpy as np
import pygame
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from saferl.cli import main
from saferl.env.ale import game_action_names, make_ale_env
from saferl.env.ground_truth import GroundTruthWrapper
from saferl.errors import SaferlError
from saferl.experiment import ExperimentConfig
from saferl.games import get_game
from saferl.human_ui import HumanOverseer, OversightQuit, Window
from saferl.human_ui.keys import LIVE_LEGEND
from saferl.human_ui.review import Reviewer
from saferl.human_ui.window import BACKGROUND, BAR_HEIGHT, ZONE_COLORS
from saferl.labels.store import LabelStore
from saferl.oversight import StepContext
from saferl.oversight.envs import make_overseen_env
from saferl.oversight.vec_wrapper import VecOversight

PONG = get_game("pong")
PACE = 20  # ms: tests never wait for a person
SAFE = PONG.safe_action(None, 0)  # RIGHT: moves the paddle up


@pytest.fixture(autouse=True)
def events():
    """A fresh event queue that key events can be posted to before the window opens."""
    pygame.display.init()
    pygame.event.clear()
    yield
    pygame.display.quit()


def post(*keys):
    """Post key presses (pygame key codes), or other events, as a person's keyboard would."""
    pygame.display.init()  # again after a window closed
    for key in keys:
        event = key if isinstance(key, pygame.event.EventType) else pygame.event.Event(pygame.KEYDOWN, key=key)
        pygame.event.post(event)


def new_store(path):
    return LabelStore.create(path, PONG.name, game_action_names(PONG))


def pong_context(steps=0, episode=0, env_index=0):
    """A real Pong decision context after ``steps`` NOOPs."""
    env = make_ale_env(PONG, seed=0)
    env.reset(seed=0)
    for _ in range(steps):
        env.step(0)
    context = StepContext(PONG, env.state(with_frame=True), episode=episode, step=steps, env_index=env_index)
    env.close()
    return context


def test_block_keys_store_labels_with_the_replacement_and_the_seconds_spent(tmp_path):
    store = new_store(tmp_path / "labels")
    overseer = HumanOverseer(pace=PACE, label_store=store)
    env = make_overseen_env(PONG, overseer, label_store=store, seed=0)
    env.reset(seed=0)
    post(pygame.K_SPACE)  # block with the game's safe action
    assert env.step(0)[4]["executed_action"] == SAFE
    post(pygame.K_3)  # block, execute action 3
    assert env.step(0)[4]["executed_action"] == 3
    post(pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_b)  # choose: safe -> 0 -> 1, then block with it
    assert env.step(0)[4]["executed_action"] == 1
    info = env.step(0)[4]  # no key within the pace: allowed
    assert not info["blocked"] and info["executed_action"] == 0 and info["seconds"] >= PACE / 1000
    env.close()
    store.close()
    with LabelStore.open(tmp_path / "labels") as stored:
        a = stored.arrays()
        assert a["blocked"].tolist() == [True, True, True, False]
        assert a["executed_action"].tolist() == [SAFE, 3, 1, 0]
        assert set(a["overseer"]) == {"human"} and (a["seconds"] > 0).all()
    assert (overseer.decisions, overseer.blocks) == (4, 3)


def test_a_number_key_beyond_the_actions_is_refused_not_taken():
    overseer = HumanOverseer(pace=PACE)
    post(pygame.K_9)  # Pong has 6 actions
    decision = overseer.review(pong_context(), 0)
    assert not decision.block and "no action 9" in overseer.message[0]
    overseer.close()


def test_undo_relabels_a_stored_block_and_retracts_one_of_the_batch_under_review(tmp_path):
    store = new_store(tmp_path / "labels")
    overseer = HumanOverseer(pace=PACE, label_store=store)
    envs = [lambda k=k: GroundTruthWrapper(make_ale_env(PONG, seed=k), PONG, with_frame=True) for k in range(2)]
    venv = VecOversight(DummyVecEnv(envs), PONG, overseer, label_store=store)
    venv.reset()
    post(pygame.K_SPACE, pygame.K_PERIOD)  # env 1 blocked, env 2 allowed at once
    venv.step(np.array([0, 0]))
    post(pygame.K_BACKSPACE, pygame.K_PERIOD, pygame.K_PERIOD)  # undo env 1's stored block
    venv.step(np.array([0, 0]))
    post(pygame.K_SPACE, pygame.K_BACKSPACE, pygame.K_PERIOD)  # block env 1, take it back before it is stored
    _, _, _, infos = venv.step(np.array([0, 0]))
    assert [info["blocked"] for info in infos] == [False, False]
    post(pygame.K_BACKSPACE, pygame.K_PERIOD, pygame.K_PERIOD)  # nothing left to undo
    venv.step(np.array([0, 0]))
    assert "nothing to undo" in overseer.message[0]
    venv.close()
    store.close()
    with LabelStore.open(tmp_path / "labels") as stored:
        assert len(stored) == 8
        assert [r.index for r in stored.relabels()] == [0] and stored.relabels()[0].reviewer == "human-undo"
        assert stored.label(0, original=True).blocked and not stored.label(0).blocked
        assert not stored.arrays()["blocked"].any()
    assert overseer.undone == 2 and overseer.blocks == 0


def test_pause_waits_for_the_person_and_dot_steps_one_frame():
    overseer = HumanOverseer(pace=PACE)
    context = pong_context()
    post(pygame.K_p)
    threading.Timer(0.4, post, (pygame.K_PERIOD,)).start()
    decision = overseer.review(context, 0)  # paused: only the '.' 0.4 s later decides
    assert not decision.block and decision.seconds >= 0.35 and overseer.paused
    post(pygame.K_PERIOD)  # still paused: one more step at once
    assert overseer.review(context, 0).seconds < 0.35
    post(pygame.K_p, pygame.K_MINUS, pygame.K_MINUS, pygame.K_MINUS, pygame.K_PLUS)  # resume; 20 -> 150 -> 100 ms
    decision = overseer.review(context, 0)
    assert not overseer.paused and overseer.pace_ms == 100
    assert decision.seconds >= 0.09  # allowed when the (new) pace ran out
    overseer.close()


@pytest.mark.parametrize("quit_event", [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE),
                                        pygame.event.Event(pygame.QUIT)], ids=["escape", "window-close"])
def test_quit_ends_oversee_cleanly_with_every_label_saved(tmp_path, capsys, quit_event):
    out = tmp_path / "labels"
    post(pygame.K_SPACE, pygame.K_PERIOD, quit_event)
    rc = main(["oversee", "--game", "pong", "--overseer", "human", "--pace", "1000", "--steps", "500",
               "--out", str(out), "--no-progress", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and summary["quit"] and summary["steps"] == 2 and summary["labels"] == 2
    with LabelStore.open(out) as stored:
        assert len(stored) == 2 and stored.arrays()["blocked"].tolist() == [True, False]


def test_overseer_quit_is_a_keyboard_interrupt_so_pipelines_save_their_checkpoint():
    assert issubclass(OversightQuit, KeyboardInterrupt)


def test_experiment_with_the_human_overseer_stops_on_quit_with_a_checkpoint_and_labels(tmp_path, capsys):
    out = tmp_path / "run"
    post(pygame.K_SPACE, pygame.K_PERIOD, pygame.K_SPACE, pygame.K_ESCAPE)
    rc = main(["experiment", "--overseer", "human", "--agent", "dqn", "--conditions", "hirl", "--oversight-steps", "50",
               "--total-steps", "100", "--pace", "1000", "--scale", "2", "--hyperparam", "buffer_size=500",
               "--hyperparam", "learning_starts=10", "--out", str(out), "--no-progress"])
    assert rc == 130 and "--resume" in capsys.readouterr().err
    run = out / "runs" / "hirl" / "seed-0"
    assert (run / "checkpoint" / "state.json").exists()
    with LabelStore.open(run / "labels") as stored:
        assert stored.arrays()["blocked"].tolist() == [True, False, True]
    saved = json.loads((out / "config.json").read_text())
    assert saved["overseer_options"] == {"pace": 1000, "scale": 2}


@pytest.mark.parametrize("changes, argument", [
    ({"agent": "a3c"}, "--agent a3c"),
    ({"workers": 2}, "--workers 1"),
    ({"overseer_options": {"pace": 0}}, "--pace"),
    ({"overseer_options": {"scale": 20}}, "--scale"),
])
def test_experiment_config_refuses_what_one_window_cannot_oversee(changes, argument):
    with pytest.raises(SaferlError, match=argument):
        ExperimentConfig(overseer="human", total_steps=100, oversight_steps=50, **changes)


@pytest.mark.parametrize("args, argument", [
    (["oversee", "--game", "pong", "--overseer", "scripted", "--pace", "100"], "--pace"),
    (["oversee", "--game", "pong", "--overseer", "human", "--scale", "0"], "--scale"),
    (["oversee", "--game", "pong", "--overseer", "human", "--blocker", "/nonexistent"], "--blocker"),
    (["review", "/nonexistent"], "LABELS"),
])
def test_bad_window_arguments_give_one_message_naming_the_argument(args, argument, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert argument in err and "Traceback" not in err


def test_the_window_draws_the_frame_scaled_with_the_danger_zones_and_a_status_bar():
    frame = pong_context(steps=30).state.frame
    window = Window(scale=3)
    window.draw(frame, PONG.danger_zones(), [("proposed: NOOP", (230, 230, 230))] * 6, LIVE_LEGEND, progress=0.5)
    pixels = pygame.surfarray.array3d(window.screen).swapaxes(0, 1)  # rows x columns x RGB
    catastrophe, blocking = PONG.danger_zones()[1], PONG.danger_zones()[0]
    row, col = (catastrophe.top + catastrophe.bottom) // 2, 80
    inside = pixels[row * 3 + 1, col * 3 + 1].astype(int)
    assert inside[0] > frame[row, col, 0] and inside[1] < frame[row, col, 1]  # tinted red over the field
    assert tuple(pixels[blocking.top * 3, blocking.left * 3]) == ZONE_COLORS[0]  # the blocking zone's outline
    assert (pixels[40 * 3 + 1, 20 * 3 + 1] == frame[40, 20]).all()  # untouched outside the zones
    assert (pixels[100 * 3:101 * 3, 60 * 3:61 * 3] == frame[100, 60]).all()  # nearest-pixel scaling
    top = 210 * 3
    assert tuple(pixels[top + 1, 10]) != BACKGROUND  # the countdown bar
    status = pixels[top + BAR_HEIGHT:, :480]
    assert (status != BACKGROUND).any(axis=2).sum() > 300  # text in the status bar
    width = window.screen.get_width()
    window.toggle_legend()
    assert window.screen.get_width() < width
    window.close()


def scripted_store(path, steps=300):
    """A label store of ``steps`` random Pong steps under the scripted overseer (with blocks)."""
    from saferl.oversight import ScriptedOverseer

    store = new_store(path)
    env = make_overseen_env(PONG, ScriptedOverseer(), label_store=store, seed=1)
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        if any(env.step(int(rng.integers(6)))[2:4]):
            env.reset()
    env.close()
    store.close()


def test_review_jumps_to_blocks_and_to_the_worst_blocker_mistakes_and_relabels_as_overlays(tmp_path):
    scripted_store(tmp_path / "labels")
    store = LabelStore.open(tmp_path / "labels", writable=True)
    blocked = store.arrays()["blocked"]
    assert 0 < blocked.sum() < len(store) - 10
    first_block = int(np.flatnonzero(blocked)[0])
    logits = np.random.default_rng(0).normal(size=len(store))
    logits[first_block] = -1.0  # the Blocker allows it: relabelled allow, it is no mistake of the Blocker's
    reviewer = Reviewer(store, logits, threshold_logit=0.0)
    fn, fp = reviewer.false_negatives(), reviewer.false_positives()
    assert len(fn) and len(fp) > 1 and logits[fn[0]] == logits[blocked & (logits < 0)].min()
    assert logits[fp[0]] == logits[~blocked & (logits >= 0)].max()
    assert (np.diff(logits[fp]) <= 0).all() and (np.diff(logits[fn]) >= 0).all()
    post(pygame.K_f, pygame.K_ESCAPE)
    assert reviewer.run()["relabels"] == 0 and reviewer.position == int(fn[0])  # the worst false negative
    post(pygame.K_HOME, pygame.K_n, pygame.K_SPACE,  # the first block, relabelled allow
         pygame.K_f,  # the next false negative
         pygame.K_p, pygame.K_p, pygame.K_b,  # the second-worst false positive, relabelled block
         pygame.K_BACKSPACE,  # undo that
         pygame.K_ESCAPE)
    summary = reviewer.run()
    assert summary["relabels"] == 2 and summary["undone"] == 1 and reviewer.position == int(fp[1])
    assert reviewer.message[0].startswith("undone")
    relabels = store.relabels()
    assert [(r.index, r.blocked) for r in relabels] == [(first_block, False), (int(fp[1]), True), (int(fp[1]), False)]
    store.close()
    with LabelStore.open(tmp_path / "labels") as stored:
        assert stored.label(first_block, original=True).blocked and not stored.label(first_block).blocked
        assert stored.arrays()["blocked"].sum() == blocked.sum() - 1


def test_saferl_review_with_a_blocker_prints_its_mistakes(tmp_path, capsys):
    from saferl.blocker import new_blocker, save_blocker

    scripted_store(tmp_path / "labels", steps=120)
    blocker = new_blocker("pong", game_action_names(PONG), seed=0)
    save_blocker(blocker, tmp_path / "blocker")
    post(pygame.K_f, pygame.K_p, pygame.K_RIGHT, pygame.K_h, pygame.K_ESCAPE)
    rc = main(["review", str(tmp_path / "labels"), "--blocker", str(tmp_path / "blocker"), "--scale", "1", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and summary["labels"] == 120 and summary["relabels"] == 0
    assert summary["blocker_false_negatives"] + summary["blocker_false_positives"] > 0
