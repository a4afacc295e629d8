"""The Blocker as an overseer: one forward pass reviews a whole batch of vectorized envs."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import torch

from saferl.blocker.data import Preprocessing
from saferl.blocker.model import sigmoid
from saferl.errors import SaferlError
from saferl.oversight.decision import BaseOverseer, Decision, StepContext, check_preferred, preferred_actions


class Scorer(Protocol):
    """What :class:`BlockerOverseer` needs: a :class:`~saferl.blocker.model.Blocker` or an
    :class:`~saferl.blocker.ensemble.Ensemble`."""

    game: str
    preprocessing: Preprocessing
    threshold_logit: float

    def assess(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block logits of every action (B x n_actions) and which inputs are unlike every labelled state (B)."""
        ...


class BlockerOverseer(BaseOverseer):
    """Blocks the actions a Blocker scores at or above its threshold.

    ``review_batch`` preprocesses the batch's frames and scores every action of every env in one
    forward pass. A blocked action is replaced by the game's safe action (the paper's a*, what the person's rule
    runs too; for a game without a safe-action map, the action the Blocker scores lowest), and a proposed action
    that is its own replacement is never blocked: there is nothing else to run. In a state unlike every labelled
    state (the Blocker's novelty check), only the game's safe action passes.
    ``Decision.score`` is the block probability of the proposed action. With stacked-frame preprocessing the
    overseer keeps each env's recent frames, restarting them when the env starts a new episode.

    The scores do not depend on the proposed actions, so they can be computed as soon as the frames
    arrive, while the agent chooses its actions: where the envs run (:meth:`frame_scorer`, which an env
    worker process runs on the next batch's frames, handing the answer to :meth:`use_scores`), or on a
    background thread here (:meth:`prefetch`). The review itself then only waits for the result.

    :param blocker: a trained Blocker (or an ensemble of them).
    """

    name = "blocker"
    requires = frozenset({"frame"})

    def __init__(self, blocker: Scorer, prefer: int | Sequence[int] = ()) -> None:
        self.blocker = blocker
        self.prefer = preferred_actions(prefer)
        self.batches = 0
        self.novel_states = 0
        self.novel_blocks = 0
        self._history: dict[int, tuple[int, deque[np.ndarray]]] = {}
        self._thread: ThreadPoolExecutor | None = None
        self._ahead: tuple[list[StepContext], Future[tuple[np.ndarray, np.ndarray, dict[int, Any]]]] | None = None

    def __getstate__(self) -> dict[str, Any]:  # a thread does not pickle (A3C workers, sweeps)
        self._take_ahead([])
        return {**self.__dict__, "_thread": None}

    def close(self) -> None:
        """Stop the background thread (agents close their overseer when they hand over or end)."""
        self._take_ahead([])
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    def prefetch(self, contexts: Sequence[StepContext]) -> None:
        """Start scoring every action in ``contexts`` on a background thread; the next :meth:`review_batch`
        on the same contexts uses the result. Only while torch runs on one CPU thread (the experiments'
        default): with more, the scoring would change torch's thread count under the agent's feet
        (see ``saferl.blocker.model.one_thread_if``)."""
        self._take_ahead([])
        if not contexts or torch.get_num_threads() > 1:
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="blocker-prefetch")
        batch = list(contexts)
        self._ahead = batch, self._thread.submit(self._score, batch)

    def frame_scorer(self) -> FrameScorer | None:
        """The scoring of :meth:`review_batch` as a picklable function of the frames (the same preprocessing and
        forward passes, so the same scores), to run where the envs run; None with stacked frames (each env's
        stack lives here) or a Blocker off the CPU (it stays where its device is)."""
        members = getattr(self.blocker, "members", [self.blocker])
        on_cpu = all(getattr(getattr(member, "device", None), "type", None) == "cpu" for member in members)
        return FrameScorer(self.blocker) if on_cpu and self.blocker.preprocessing.stack == 1 else None

    def use_scores(self, contexts: Sequence[StepContext], scores: tuple[np.ndarray, np.ndarray]) -> None:
        """The logits and novelty :meth:`frame_scorer`'s function gave for ``contexts``' frames: the next
        :meth:`review_batch` on the same contexts (the same objects) decides from them."""
        self._take_ahead([])
        logits, novel = scores
        done: Future[tuple[np.ndarray, np.ndarray, dict[int, Any]]] = Future()
        done.set_result((logits, novel, {}))
        self._ahead = list(contexts), done

    def _take_ahead(self, contexts: Sequence[StepContext]) -> tuple[np.ndarray, np.ndarray] | None:
        """The prefetched scores and novelty if they were for ``contexts`` (the same objects), waiting for them,
        with their frames kept in the stacks; else None (and the stacks stay as they were)."""
        if self._ahead is None:
            return None
        batch, future = self._ahead
        self._ahead = None
        logits, novel, history = future.result()
        if len(batch) != len(contexts) or any(a is not b for a, b in zip(batch, contexts)):
            return None
        self._history.update(history)
        return logits, novel

    def _score(self, contexts: Sequence[StepContext]) -> tuple[np.ndarray, np.ndarray, dict[int, Any]]:
        """Block logits of every action in each context (B x n_actions), in one forward pass, which contexts are
        novel (B), and the stacks they leave (see :meth:`_inputs`)."""
        inputs, history = self._inputs(contexts)
        logits, novel = self.blocker.assess(inputs)
        return logits, novel, history

    def review(self, context: StepContext, action: int) -> Decision:
        return self.review_batch([context], [action])[0]

    def _inputs(self, contexts: Sequence[StepContext]) -> tuple[np.ndarray, dict[int, Any]]:
        """The uint8 Blocker inputs of the contexts' frames (with each env's earlier frames when stacking), and
        each env's stack with the new frame, to be kept once the review uses them (a prefetch that goes unused
        must not add its frames)."""
        frames = [context.state.frame for context in contexts]
        if any(frame is None for frame in frames):
            raise RuntimeError("BlockerOverseer needs frames: build the env with with_frame=True (make_vec_env does "
                               "when the overseer requires 'frame')")
        processed = self.blocker.preprocessing.frames(frames)
        stack = self.blocker.preprocessing.stack
        if stack == 1:
            return processed, {}
        inputs, history = [], {}
        for context, frame in zip(contexts, processed):
            episode, recent = self._history.get(context.env_index, (None, None))
            if episode != context.episode or recent is None:
                recent = deque([frame] * stack, maxlen=stack)
            else:
                recent = deque(recent, maxlen=stack)
                recent.append(frame)
            history[context.env_index] = (context.episode, recent)
            inputs.append(np.concatenate(recent))
        return np.stack(inputs), history

    def review_batch(self, contexts: Sequence[StepContext], actions: Sequence[int]) -> list[Decision]:
        if not contexts:
            return []
        game = contexts[0].game
        if game.name != self.blocker.game:
            raise SaferlError(f"this Blocker was trained for {self.blocker.game!r}, not {game.name!r}: "
                              f"train one for {game.name} (saferl train-blocker LABELS... --game {game.name})")
        ahead = self._take_ahead(contexts)
        if ahead is None:
            logits, novel, history = self._score(contexts)
            self._history.update(history)
        else:
            logits, novel = ahead
        self.batches += 1
        return self.decide(contexts, actions, logits, novel)

    def decide(self, contexts: Sequence[StepContext], actions: Sequence[int], logits: np.ndarray,
               novel: np.ndarray | None = None) -> list[Decision]:
        """The decisions on ``actions`` given the block logits of every action in each context (B x n_actions)
        and which contexts are novel (None: none)."""
        if not np.isfinite(logits).all():
            raise SaferlError("the Blocker produced NaN or infinite scores: its weights are damaged; retrain it")
        blocked = logits >= self.blocker.threshold_logit
        novel = np.zeros(len(contexts), bool) if novel is None else novel
        self.novel_states += int(novel.sum())
        rows, proposed = np.arange(len(contexts)), np.asarray(actions, np.int64).reshape(-1)
        scores = sigmoid(logits[rows, proposed]).tolist()  # the same floats as one sigmoid per action
        at_or_above = blocked[rows, proposed]
        if not at_or_above.any() and not novel.any():  # nearly every step: every proposed action passes
            return [Decision(block=False, score=score) for score in scores]
        blocks, novelties = at_or_above.tolist(), novel.tolist()
        decisions = []
        for k, (context, action) in enumerate(zip(contexts, proposed.tolist())):
            novel_block = novelties[k] and not blocks[k] and _game_safe(context, action) != action
            prefer = () if novelties[k] else self.prefer  # in a novel state no pass is trusted
            instead = replacement(context, action, logits[k], blocked[k], prefer) if blocks[k] or novel_block else action
            if instead == action:
                decisions.append(Decision(block=False, score=scores[k]))
                continue
            self.novel_blocks += novel_block
            decisions.append(Decision(block=True, safe_action=instead, score=scores[k]))
        return decisions

    def stats(self) -> dict[str, int]:
        """How many states were novel, and how many passes the novelty check turned into blocks."""
        return {"novel_states": self.novel_states, "novel_blocks": self.novel_blocks}


class FrameScorer:
    """A Blocker's block logits of every action (B x n_actions) and novelty (B) for a batch of B RGB frames: what
    :meth:`BlockerOverseer.review_batch` computes before it looks at the proposed actions (frames of one step,
    no stacking). Picklable, so that an env worker process can run it; there it runs torch on as many threads as
    the process that built it (batches of up to 64 run on one in either, as :class:`~saferl.blocker.model.Blocker`
    runs them).

    :param blocker: a Blocker or an ensemble of them.
    """

    def __init__(self, blocker: Scorer) -> None:
        self.blocker = blocker
        self.threads = torch.get_num_threads()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def __call__(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.blocker.assess(self.blocker.preprocessing.frames(frames))


def _game_safe(context: StepContext, action: int) -> int | None:
    """The game's safe action for ``action`` (None when the game has no safe-action map)."""
    try:
        return int(context.game.safe_action(context.state, action))
    except NotImplementedError:
        return None


def replacement(context: StepContext, action: int, logits: np.ndarray, blocked: np.ndarray,
                prefer: Sequence[int] = ()) -> int:
    """What to execute instead of ``action``: the first of ``prefer`` (other than ``action``) that the Blocker
    passes, else the game's safe action (the paper's a*, what the person's rule runs too), or, for a game without a
    safe-action map, the other action the Blocker scores lowest. When that is ``action`` itself there is nothing
    to block."""
    check_preferred(tuple(prefer), len(blocked))
    for candidate in prefer:
        if candidate != action and not blocked[candidate]:
            return candidate
    safe = _game_safe(context, action)
    if safe is not None and 0 <= safe < len(logits):
        return safe
    others = np.delete(np.arange(len(logits)), action)
    return int(others[np.argmin(logits[others])])
