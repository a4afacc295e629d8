"""The deferring overseer: a Blocker ensemble decides where it is sure and asks a person where it is not.

Active querying (PAPER.md: "query the human only where the Blocker is uncertain or the state is
novel"). Until a Blocker exists every decision goes to the asker (a person, or any stand-in
:class:`~saferl.oversight.decision.Overseer` such as the scripted rule). After that the ensemble
decides, unless one of these says it should not:

- *disagreement*: the members' block probabilities for the proposed action spread more than
  ``disagreement`` (their standard deviation), or, with ``split_votes``, one member would block and another
  pass (each at its own zero-false-negative threshold);
- *near the threshold*: the mean logit lies within ``band`` logits of the zero-false-negative threshold;
- *novel*: the frame is farther from every frame the asker labelled than ``novelty`` times the
  distance within which 99% of those labelled frames have a neighbour from another stretch of play
  (a coarse 4x4-pooled sketch);
- *regression*: for ``probation`` decisions after each retraining (-1: until the next one), the new ensemble
  would let the action pass where the one before it would have blocked (a refit can forget what the last one
  knew).

With ``hindsight`` N, a catastrophe (a visible event: a life lost, a shot into a bunker; the ground truth stands in
for the person noticing it) calls the person back to the last N decisions of that episode the ensemble made
itself, this step's included (:class:`~saferl.oversight.vec_wrapper.VecOversight` keeps them): the states that led
to it, where the ensemble was sure and wrong. Their answers are labels like any other.

With ``ask_blocks`` below 1, only that share (at random) of the unsure decisions on which the ensemble
would block are asked; it blocks the others itself. Every unsure pass is asked.

The asker's answers are labels (``Decision.label`` True, with the asker's seconds); the ensemble's own
decisions are not (``label`` False, 0 seconds), so a label store keeps only what a person was asked.
The overseer keeps its own in-memory copy of the asked examples (one preprocessed frame each: 25 KB
for Pong, 77 KB for Space Invaders and Road Runner) and retrains the ensemble on them, in the
reviewing process, once ``first_fit`` labels are in and then every ``refit_every`` new labels (the
agent waits meanwhile, as it waits for a person). Training keeps the process's torch RNG state, so the
agent's randomness goes on as if no training had happened. A resumed run recalls the labels of its store
(:meth:`DeferringOverseer.recall`) and trains on them before it goes on.
Under A3C every worker process builds its own deferring overseer (its own labels, store and ensemble),
so the ask-everything start repeats in each worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from saferl.blocker.deferral_config import DeferralConfig
from saferl.errors import SaferlError
from saferl.oversight.decision import BaseOverseer, Decision, Overseer, StepContext

NOVELTY_QUANTILE = 0.99
NOVELTY_PROBES = 512  # labelled frames whose nearest neighbour calibrates the novelty radius
POOL = 4  # the novelty sketch averages 4x4 pixel blocks of the Blocker's input
PRIOR_EPISODES = 10**6  # prior store k's episodes are numbered from -(k + 1) * this on: below every live one
REASONS = ("disagreement", "near_threshold", "novel", "regression", "hindsight")
FIRST_FIT_RETRY = 100  # labels before trying again when the first ensemble could not be made (blocks in too
# few segments): waiting ``refit_every`` asked every decision of up to 800 more labels (Space Invaders, measured)


def sketch(inputs: np.ndarray) -> np.ndarray:
    """Coarse float32 vectors of uint8 Blocker inputs (B x C x H x W): means of 4x4 pixel blocks, in [0, 1]."""
    b, c, h, w = inputs.shape
    h4, w4 = h // POOL, w // POOL
    blocks = inputs[:, :, :h4 * POOL, :w4 * POOL].reshape(b, c, h4, POOL, w4, POOL)
    return (blocks.mean(axis=(3, 5), dtype=np.float32) / 255.0).reshape(b, -1)


@dataclass
class _Asked:
    """The in-memory copy of the asked examples (what the ensemble trains on)."""

    frames: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    blocked: list[bool] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    segment_ids: dict[tuple[int, int], int] = field(default_factory=dict)

    def add(self, frame: np.ndarray, action: int, blocked: bool, episode: int, segment: int) -> None:
        self.frames.append(frame)
        self.actions.append(action)
        self.blocked.append(blocked)
        self.segments.append(self.segment_ids.setdefault((episode, segment), len(self.segment_ids)))

    def __len__(self) -> int:
        return len(self.actions)


class DeferringOverseer(BaseOverseer):
    """Decides with a Blocker ensemble where it is sure, asks ``asker`` where it is not (see the module docstring).

    :param asker: who is asked (the person, or a stand-in overseer); its answers are the labels.
    :param game: the game's name (the ensemble is a Blocker for it).
    :param action_names: the game's actions, in the env's order.
    :param config: when to ask and how to train.
    :param seed: seeds the splits, the members' training and the novelty sample.
    """

    name = "deferring"

    def __init__(self, asker: Overseer, game: str, action_names: Sequence[str],
                 config: DeferralConfig = DeferralConfig(), seed: int = 0) -> None:
        from saferl.blocker import default_preprocessing

        self.asker = asker
        self.game = game
        self.action_names = list(action_names)
        self.config = config
        self.seed = seed
        self.requires = frozenset({"frame"}) | frozenset(getattr(asker, "requires", ()))
        if config.hindsight and "emulator" in self.requires:
            raise SaferlError(f"the {asker.name} asker simulates the live emulator, so it cannot judge past states: "
                              "use hindsight 0 (overseer_options) or another asker")
        self.hindsight = config.hindsight
        self.preprocessing = default_preprocessing(game)
        self.ensemble: Any | None = None
        self.fits = 0
        self.asked = 0
        self.decided = 0
        self.reasons = dict.fromkeys(REASONS, 0)
        self.blocked_unasked = 0
        self._view: Any | None = None
        self._previous: Any | None = None  # the ensemble before the last retraining, while on probation
        self._probation_left = 0
        self._examples = _Asked()
        self._store: Any | None = None
        self._next_fit = config.first_fit
        self._memory = np.empty((0, 0), np.float32)
        self._radius = math.inf
        self._rng = np.random.default_rng(seed)
        self._prior = 0  # prior examples (the first ones), once learned
        self._prior_due = self._check_prior(config.prior_stores)

    def review(self, context: StepContext, action: int) -> Decision:
        return self.review_batch([context], [action])[0]

    def review_batch(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        if not contexts:
            return []
        self._learn_prior()
        if contexts[0].game.name != self.game:
            raise SaferlError(f"this deferring overseer learns {self.game!r}, not {contexts[0].game.name!r}")
        if any(context.state.frame is None for context in contexts):
            raise RuntimeError("the deferring overseer needs frames: build the envs with with_frame=True")
        actions = [int(a) for a in actions]
        inputs = self.preprocessing.frames([context.state.frame for context in contexts])
        if self.ensemble is None:
            decisions: list[Decision | None] = [None] * len(contexts)
            ask = np.ones(len(contexts), bool)
        else:
            decisions, ask = self._judge(contexts, actions, inputs)
        asked = np.flatnonzero(ask)
        if len(asked):
            answers = self._ask([contexts[i] for i in asked], [actions[i] for i in asked], inputs[asked])
            for i, answer in zip(asked, answers):
                decisions[i] = answer
        self.decided += len(contexts) - len(asked)
        self._fit_when_due()
        return decisions  # type: ignore[return-value]

    def review_hindsight(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        """Ask about earlier decisions the ensemble made itself (after a catastrophe); the answers are labels."""
        if not contexts:
            return []
        self._learn_prior()
        self.reasons["hindsight"] += len(contexts)
        inputs = self.preprocessing.frames([context.state.frame for context in contexts])
        answers = self._ask(contexts, [int(a) for a in actions], inputs)
        self._fit_when_due()
        return answers

    def _ask(self, contexts: Sequence[StepContext], actions: list[int], inputs: np.ndarray) -> list[Decision]:
        """The asker's answers (labels), kept as training examples."""
        answers = [replace(answer, label=True) for answer in self.asker.review_batch(contexts, actions)]
        for context, action, frame, answer in zip(contexts, actions, inputs, answers):
            # a copy: a view of the batch would keep all its frames alive for as long as the label
            self._examples.add(frame.copy(), action, bool(answer.block), context.episode,
                               context.step // self.config.segment)
        self.asked += len(answers)
        return answers

    def _fit_when_due(self) -> None:
        """Train once enough new labels are in: ``refit_every`` after the last ensemble, ``FIRST_FIT_RETRY`` after
        a first one that could not be made."""
        if len(self._examples) >= self._next_fit:
            fitted = self.fit()
            wait = self.config.refit_every if fitted or self.ensemble is not None else FIRST_FIT_RETRY
            self._next_fit = len(self._examples) + wait

    def _judge(self, contexts: Sequence[StepContext], actions: list[int],
               inputs: np.ndarray) -> tuple[list[Decision | None], np.ndarray]:
        """The ensemble's own decisions (not labels) and which of them to ask the asker about instead."""
        from saferl.blocker.model import sigmoid

        members = self.ensemble.member_logits(inputs, None)  # K x B x n_actions
        mean = members.mean(axis=0)
        own = [replace(d, label=False, seconds=0.0) for d in self._view.decide(contexts, actions, mean)]
        rows = np.arange(len(actions))
        chosen = members[:, rows, actions]
        why = {
            "disagreement": (sigmoid(chosen).std(axis=0) > self.config.disagreement) | self._split_votes(chosen),
            "near_threshold": np.abs(chosen.mean(axis=0) - self.ensemble.threshold_logit) < self.config.band,
            "novel": self._novel(inputs),
            "regression": self._regressions(inputs, actions, chosen.mean(axis=0) < self.ensemble.threshold_logit),
        }
        unsure = np.logical_or.reduce(list(why.values()))
        for reason, flags in why.items():
            self.reasons[reason] += int(flags.sum())
        if self.config.ask_blocks < 1:
            blocking = chosen.mean(axis=0) >= self.ensemble.threshold_logit
            unasked = unsure & blocking & (self._rng.random(len(actions)) >= self.config.ask_blocks)
            self.blocked_unasked += int(unasked.sum())
            unsure &= ~unasked
        return list(own), unsure

    def _split_votes(self, chosen: np.ndarray) -> np.ndarray:
        """Where one member would block and another pass (K x B logits, each member at its own threshold)."""
        if not self.config.split_votes:
            return np.zeros(chosen.shape[1], bool)
        votes = chosen >= np.array([member.threshold_logit for member in self.ensemble.members])[:, None]
        return votes.any(axis=0) & ~votes.all(axis=0)

    def _regressions(self, inputs: np.ndarray, actions: list[int], passes: np.ndarray) -> np.ndarray:
        """Which of the new ensemble's passes the previous one would have blocked, while on probation."""
        if self._previous is None or (self.config.probation > 0 and self._probation_left <= 0):
            self._previous = None  # probation over: let it go
            return np.zeros(len(actions), bool)
        self._probation_left -= len(actions)
        return passes & (self._previous.logits(inputs, np.asarray(actions)) >= self._previous.threshold_logit)

    def fit(self) -> bool:
        """Train the ensemble on the asked examples (keeping the previous one when they cannot make one yet:
        too few blocks, or blocks in too few segments). Returns whether a new ensemble was trained."""
        import torch

        from saferl.blocker import BlockerOverseer, Split, TrainConfig, split_by_episode, train_ensemble

        if self._prior_due:
            self._learn_prior()  # it fits
            return True
        self._take_relabels()
        data = self._dataset()
        seed = self.seed + 100 * self.fits
        try:
            split = split_by_episode(data, (0.7, 0.15, 0.15), seed=seed)
            held_out = np.sort(np.concatenate([split.val, split.test]))  # both set the threshold: more blocks
            epochs = -(-self.config.updates // -(-len(split.train) // TrainConfig.batch_size))
            config = TrainConfig(epochs=epochs, patience=epochs, seed=seed, device=self.config.device, progress=False)
            with torch.random.fork_rng(devices=[]):
                ensemble = train_ensemble(data, Split(split.train, held_out, held_out[:0]), self.config.members,
                                          config=config, margin=self.config.margin)
        except SaferlError:
            return False
        if self.config.probation and self.ensemble is not None:
            self._previous, self._probation_left = self.ensemble, self.config.probation
        self.ensemble, self._view = ensemble, BlockerOverseer(ensemble)
        self.fits += 1
        self._calibrate_novelty(data.frames, data.episodes)
        return True

    def _take_relabels(self) -> None:
        """Take the store's corrections (a person's undo relabels a stored answer) into the asked examples. With a
        store, the examples after the prior ones are its labels in its order: recalled ones first, then each
        answer as it is stored."""
        if self._store is not None and len(self._store) == len(self._examples) - self._prior:
            self._examples.blocked[self._prior:] = self._store.arrays()["blocked"].tolist()

    def _dataset(self) -> Any:
        """The asked examples as a Blocker dataset whose "episodes" are segments of episodes."""
        from saferl.blocker import BlockerData

        asked = self._examples
        n = len(asked)
        segments = np.asarray(asked.segments, np.int64)
        return BlockerData(game=self.game, action_names=self.action_names, preprocessing=self.preprocessing,
                           frames=np.stack(asked.frames), actions=np.asarray(asked.actions, np.int64),
                           blocked=np.asarray(asked.blocked, bool), catastrophe=np.zeros(n, bool),
                           store=np.zeros(n, np.int64), store_episode=segments, episodes=segments,
                           history=np.arange(n)[:, None])

    def _calibrate_novelty(self, frames: np.ndarray, segments: np.ndarray) -> None:
        """Keep a sample of labelled frames' sketches; the radius within which 99% of them have a labelled frame
        of another segment, times ``novelty``. Frames of one segment are near copies of each other: measured
        against its own segment a frame always has a close neighbour, and the radius so made called 80% of a
        Space Invaders agent's later frames novel; against other segments about none (Road Runner, whose road
        scrolls by: a quarter). Measured on 4,000 frames after the first 1,000 labels of a DQN run."""
        if not self.config.novelty:
            return
        keep = self._rng.permutation(len(frames))[:self.config.novelty_memory]
        self._memory, kept_segments = sketch(frames[keep]), segments[keep]
        probes = len(self._memory[:NOVELTY_PROBES])
        from saferl.blocker.novelty import squared_distances

        squared = squared_distances(self._memory[:probes], self._memory)
        squared[kept_segments[:probes, None] == kept_segments[None, :]] = np.inf  # not its own segment
        nearest = np.sqrt(squared.min(axis=1))
        nearest = nearest[np.isfinite(nearest)]
        self._radius = (float(np.quantile(nearest, NOVELTY_QUANTILE)) * self.config.novelty if len(nearest)
                        else math.inf)

    def _novel(self, inputs: np.ndarray) -> np.ndarray:
        """Which inputs lie farther from every remembered labelled frame than the novelty radius."""
        from saferl.blocker.novelty import nearest_distances

        if not self.config.novelty or not len(self._memory):
            return np.zeros(len(inputs), bool)
        return nearest_distances(sketch(inputs), self._memory) > self._radius

    def recall(self, store: Any) -> None:
        """Take the labels already in ``store`` (a resumed run's: the decisions it asked about) as asked examples,
        and train an ensemble on them when they are enough: the resumed run goes on asking where it left off."""
        self._learn_prior()
        self._add_labels(store)
        self._fit_when_due()

    def _add_labels(self, store: Any, episodes: int = 0) -> None:
        """Every label of ``store`` as an example, its episodes numbered from ``episodes`` on."""
        from saferl.blocker.data import decoded_inputs

        records = store.arrays()
        frames = (frame for chunk in decoded_inputs(store, self.preprocessing) for frame in chunk)
        for i, frame in enumerate(frames):
            self._examples.add(frame.copy(), int(records["proposed_action"][i]), bool(records["blocked"][i]),
                               episodes + int(records["episode"][i]), int(records["step"][i]) // self.config.segment)

    def _check_prior(self, paths: Sequence[str]) -> list[str]:
        """The prior stores, each opened once to check that it holds labels of this game (they are learned
        before the first decision, not here: building the overseer to check a config trains nothing)."""
        from saferl.labels.store import LabelStore

        for path in paths:
            with LabelStore.open(path, self.game):
                pass
        return list(paths)

    def _learn_prior(self) -> None:
        """Once, before anything else: take the labels of the prior stores (earlier runs of this game) as the first
        examples and train the first ensemble on them. Their episodes are numbered below the live ones, so
        segments never mix."""
        from saferl.labels.store import LabelStore

        paths, self._prior_due = self._prior_due, []
        if not paths:
            return
        for k, path in enumerate(paths):
            with LabelStore.open(path, self.game) as store:
                self._add_labels(store, episodes=-(k + 1) * PRIOR_EPISODES)
        self._prior = len(self._examples)
        if not self.fit():
            raise SaferlError(f"the prior labels ({', '.join(paths)}) cannot train a Blocker: they need blocks in "
                              "several stretches of play; record more (saferl oversee --out DIR) or drop prior")
        self._next_fit = len(self._examples) + self.config.refit_every

    @property
    def label_store(self) -> Any:
        """The store its asked labels go to (the human overseer relabels its stored blocks there on undo)."""
        return self._store

    @label_store.setter
    def label_store(self, store: Any) -> None:
        """Give the asker ``store``; the labels already in it (a resumed run's) are recalled (:meth:`recall`), and
        its relabels are taken at every fit."""
        if hasattr(self.asker, "label_store"):
            self.asker.label_store = store
        self._store = store
        if store is not None and len(store):
            self.recall(store)

    def close(self) -> None:
        """Close the asker (a person's window)."""
        close = getattr(self.asker, "close", None)
        if close is not None:
            close()

    def stats(self) -> dict[str, Any]:
        """How often it asked, decided itself, and why it was unsure (asked, or blocked unasked under
        ``ask_blocks``); how many ensembles it trained."""
        return {"asked": self.asked, "decided": self.decided, "fits": self.fits, "labels_kept": len(self._examples),
                "prior_labels": self._prior,
                "blocked_unasked": self.blocked_unasked,
                **{f"asked_{reason}": count for reason, count in self.reasons.items()}}


def make_deferring_overseer(asker: Overseer, game: str | None, seed: int | None = None,
                            **options: Any) -> DeferringOverseer:
    """The deferring overseer that asks ``asker`` (someone who labels); ``options`` are :class:`DeferralConfig`
    fields."""
    from saferl.env.ale import game_action_names
    from saferl.games import get_game

    if game is None:
        raise SaferlError("the deferring overseer trains a Blocker for one game: give --game")
    config = DeferralConfig.from_options(options)
    return DeferringOverseer(asker, game, game_action_names(get_game(game)), config, seed or 0)
