"""The oversight wrapper for vectorized envs: one overseer call per batch (what a Blocker needs)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from saferl.env.shared_vec_env import SharedMemoryVecEnv
from saferl.errors import SaferlError
from saferl.games import Game
from saferl.oversight.batch import BatchOversight
from saferl.oversight.decision import Overseer, StepContext
from saferl.oversight.intervention import Intervention, Mode
from saferl.oversight.metrics import SafetyCounters


class VecOversight(VecEnvWrapper):
    """Reviews the proposed actions of all envs in one ``overseer.review_batch`` call per step.

    The sub-envs must have a :class:`~saferl.env.ground_truth.GroundTruthWrapper` at their
    bottom (see :func:`saferl.oversight.envs.make_vec_env`): ground truth is computed where each env runs,
    and the decision context comes back in ``info["game_state"]``. What oversight does around the step (the
    decisions, modes, penalty, labels, hindsight, episodes) is :class:`~saferl.oversight.batch.BatchOversight`'s,
    as in :class:`~saferl.oversight.wrapper.OversightWrapper`; this wrapper steps the envs and asks them the
    counterfactuals.

    :param venv: the vectorized envs.
    :param game: their game.
    :param overseer: who reviews (None: nobody; catastrophes are still counted).
    :param first_episode: the id given to the first episode; later ones count up across envs.
    """

    def __init__(
        self,
        venv: VecEnv,
        game: Game,
        overseer: Overseer | None = None,
        mode: Mode | str = Mode.REPLACE,
        penalty: float = -1.0,
        label_store: Any | None = None,
        first_episode: int = 0,
    ) -> None:
        super().__init__(venv)
        self.game = game
        requires = overseer.requires if overseer is not None else frozenset()
        if "emulator" in requires and not isinstance(venv, DummyVecEnv):
            raise SaferlError(
                f"the {overseer.name} overseer simulates the envs, so they must run in this process: use DummyVecEnv "
                "(make_vec_env(..., backend='dummy'), its default for such overseers)"
            )
        emulators = [env.get_wrapper_attr("emulator") for env in venv.envs] if "emulator" in requires else None
        self.oversight = BatchOversight(game, self.num_envs, overseer, mode, penalty, label_store, first_episode,
                                        emulators)
        self._probed: np.ndarray | None = None  # which envs' counterfactuals ride on the step
        self._counterfactuals: dict[int, bool] = {}
        self._worker_scores = False  # a worker process runs the overseer's frame scorer
        self._frames_kept = False  # a wrapper above reads the frames (keep_frames)
        self._scoring = False  # ... and owes the scores of the current contexts
        self._score_in_worker()

    @property
    def overseer(self) -> Overseer | None:
        return self.oversight.overseer

    @property
    def intervention(self) -> Intervention:
        return self.oversight.intervention

    def set_overseer(self, overseer: Overseer | None, mode: Mode | str | None = None, label_store: Any | None = None) -> None:
        """Hand oversight to ``overseer`` from the next step on (the Blocker after the human, in HIRL).

        Open episodes, their contexts and the counters go on; ``mode`` (None: keep) and ``label_store``
        (None: store no more labels) apply to the new overseer's decisions.
        """
        requires = overseer.requires if overseer is not None else frozenset()
        if "emulator" in requires and self.oversight.emulators is None:
            raise SaferlError(f"the {overseer.name} overseer simulates the envs: build them with it from the start")
        if "frame" in requires and not self._has_frames():
            raise SaferlError(f"the {overseer.name} overseer reads frames: build the envs with with_frame=True")
        self._drop_scores()
        self.oversight.set_overseer(overseer, mode, label_store)
        self._score_in_worker()
        self._prefetch()

    def _has_frames(self) -> bool:
        """Whether the envs render RGB frames (on SharedMemoryVecEnv, even while its infos leave them out)."""
        if isinstance(self.venv, SharedMemoryVecEnv):
            return self.venv.recipe.frames
        contexts = self.oversight.contexts
        return not contexts or contexts[0] is None or contexts[0].state.frame is not None

    def _score_in_worker(self) -> None:
        """Have a worker process of a SharedMemoryVecEnv run the overseer's frame scorer, if it has one (the
        Blocker has) that can be pickled; else the overseer scores in this process."""
        scorer = self.overseer.frame_scorer() if self.overseer is not None else None
        venv = self.venv
        if scorer is not None and not (isinstance(venv, SharedMemoryVecEnv) and venv.recipe.frames and venv.worker_pids):
            scorer = None
        if scorer is not None:
            try:
                venv.set_scorer(scorer)
            except ValueError:  # a scorer that cannot be pickled (a test's stand-in, a hook on the net)
                scorer = None
        if scorer is None and self._worker_scores:
            venv.set_scorer(None)
        self._worker_scores = scorer is not None
        if isinstance(venv, SharedMemoryVecEnv) and venv.recipe.frames:
            self._frames_here(self._frames_kept or not self._worker_scores or self.intervention.label_store is not None)

    def keep_frames(self) -> None:
        """Keep the RGB frames in the infos and contexts on every step, for a wrapper above that reads them (the
        attack's recorder); otherwise they stay in the worker processes while a Blocker scores there."""
        self._frames_kept = True
        if isinstance(self.venv, SharedMemoryVecEnv) and self.venv.recipe.frames:
            self._frames_here(True)

    def _frames_here(self, needed: bool) -> None:
        """Have SharedMemoryVecEnv copy the RGB frames into this process only when something here reads them (an
        overseer that scores in this process, labels to store); with a scorer in worker 0 and no labels, nothing
        does. When they are needed again, the open contexts get their frames."""
        venv = self.venv
        if needed and not venv.frames_in_infos:
            frames = venv.current_frames()
            contexts = self.oversight.contexts
            for i, context in enumerate(contexts):
                if context is not None and context.state.frame is None:
                    contexts[i] = replace(context, state=replace(context.state, frame=frames[i]))
        venv.frames_in_infos = needed

    def _drop_scores(self) -> None:
        """Receive and drop the scores a worker owes for the current contexts (the overseer or the episodes change)."""
        if self._scoring:
            self._scoring = False
            self.venv.score_wait()

    def _prefetch(self) -> None:
        """Start on the contexts the overseer reviews next, if it can start early (the Blocker can).

        Only when the envs step in other processes, whose cores are idle while the agent chooses: in a worker
        process of SharedMemoryVecEnv when the overseer has a frame scorer, else on the overseer's own
        background thread. With in-process envs the thread slowed DQN on 1 env, while on SharedMemoryVecEnv it
        sped up DQN on 4 envs and PPO on 8 (``python bench/run.py``)."""
        contexts = self.oversight.contexts
        if self.overseer is None or contexts[0] is None:
            return
        if self._worker_scores:
            if not self.venv.scoring:  # a step asks for the scores itself; a reset or a new overseer does not
                self.venv.score_async()
            self._scoring = True
        elif not isinstance(self.venv, DummyVecEnv):
            self.overseer.prefetch(contexts)

    @property
    def counters(self) -> SafetyCounters:
        """The running safety counters over all envs."""
        return self.oversight.counters

    @property
    def contexts(self) -> list[StepContext]:
        """What each env's next decision is taken in (``state.frame`` is the frame the overseer will see; None on
        SharedMemoryVecEnv while a scorer in its worker reviews and no labels are stored: ``current_frames()``)."""
        return list(self.oversight.contexts)

    def _start(self, index: int, info: dict[str, Any]) -> None:
        if "game_state" not in info:
            raise RuntimeError("VecOversight needs envs built on GroundTruthWrapper (info['game_state'] is missing)")
        self.oversight.start_episode(index, info["game_state"])

    def reset(self) -> VecEnvObs:
        self._drop_scores()
        obs = self.venv.reset()
        for index, info in enumerate(self.venv.reset_infos):
            self.oversight.end_episode(index)
            self._start(index, info)
        self._prefetch()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        proposed = np.asarray(actions).astype(np.int64).reshape(self.num_envs)
        if self._scoring:
            self._scoring = False
            self.overseer.use_scores(self.oversight.contexts, self.venv.score_wait())
        executed = self.oversight.choose(proposed.tolist())
        if isinstance(self.venv, SharedMemoryVecEnv):  # the counterfactuals ride on the step: no round trip
            self._probed, self._counterfactuals = executed != proposed, {}
            self.venv.step_async(executed, probes=np.where(self._probed, proposed, -1), score=self._worker_scores)
        else:
            self._probed, self._counterfactuals = None, self._ask_counterfactuals(proposed, executed)
            self.venv.step_async(executed)

    def _ask_counterfactuals(self, proposed: np.ndarray, executed: np.ndarray) -> dict[int, bool]:
        """Would each overridden env's proposed action have held a catastrophe? One ``env_method`` call per
        distinct proposed action, so envs in worker processes answer together."""
        overridden = np.flatnonzero(executed != proposed)
        answers: dict[int, bool] = {}
        for action in np.unique(proposed[overridden]):
            indices = overridden[proposed[overridden] == action].tolist()
            answers.update(zip(indices, self.venv.env_method("would_be_catastrophe", int(action), indices=indices)))
        return answers

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        rewards = rewards.astype(np.float32)
        counterfactuals = self._counterfactuals
        if self._probed is not None:
            held = self.venv.probed_catastrophes()
            counterfactuals = {int(i): bool(held[i]) for i in np.flatnonzero(self._probed)}
        outcomes = self.oversight.settle([info["catastrophe"] for info in infos], counterfactuals, rewards, dones,
                                         [info["game_state"] for info in infos])
        for i, outcome in enumerate(outcomes):
            infos[i].update(outcome.as_info())
            if dones[i]:
                self._start(i, self.venv.reset_infos[i])
        self._prefetch()
        return obs, rewards, dones, infos
