"""The oversight wrapper for vectorized envs: one overseer call per batch (what a Blocker needs)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from saferl.errors import SaferlError
from saferl.games import Game
from saferl.oversight.decision import ALLOW, Decision, Overseer, StepContext
from saferl.oversight.intervention import Hindsight, Intervention, Mode
from saferl.oversight.metrics import SafetyCounters
from saferl.env.shared_vec_env import SharedMemoryVecEnv


class VecOversight(VecEnvWrapper):
    """Reviews the proposed actions of all envs in one ``overseer.review_batch`` call per step.

    The sub-envs must have a :class:`~saferl.env.ground_truth.GroundTruthWrapper` at their
    bottom (see :func:`saferl.oversight.envs.make_vec_env`): ground truth is computed where each env runs,
    and the decision context comes back in ``info["game_state"]``. Steps, infos, modes, penalty
    and labels are as in :class:`~saferl.oversight.wrapper.OversightWrapper`.

    Hindsight: an overseer with ``hindsight`` N > 0 and a ``review_hindsight(contexts, actions)`` method (the
    deferring overseer) is asked, after a catastrophe, about its last N decisions in that env's episode that were
    not labels (it decided them itself); its answers are stored and counted as labels of the catastrophe's step.

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
        self.overseer = overseer
        self.intervention = Intervention(mode, penalty, label_store, overseer_name=overseer.name if overseer else "none")
        requires = getattr(overseer, "requires", frozenset())
        if "emulator" in requires and not isinstance(venv, DummyVecEnv):
            raise SaferlError(
                f"the {overseer.name} overseer simulates the envs, so they must run in this process: use DummyVecEnv "
                "(make_vec_env(..., backend='dummy'), its default for such overseers)"
            )
        self._emulators = [env.get_wrapper_attr("emulator") for env in venv.envs] if "emulator" in requires else None
        self._next_episode = first_episode
        self._contexts: list[StepContext] = []
        self._pending: list[tuple[StepContext, Decision, int, int, bool | None]] = []
        self._probed: np.ndarray | None = None  # which envs' counterfactuals ride on the step
        self._returns = np.zeros(self.num_envs)
        self._recent: list[deque[tuple[StepContext, int, int]]] = []  # (context, proposed, executed)
        self._keep_recent()

    def _keep_recent(self) -> None:
        """Make room for each env's last unlabelled decisions, as many as the overseer's ``hindsight``."""
        self._recent = [deque(maxlen=getattr(self.overseer, "hindsight", 0)) for _ in range(self.num_envs)]

    def set_overseer(self, overseer: Overseer | None, mode: Mode | str | None = None, label_store: Any | None = None) -> None:
        """Hand oversight to ``overseer`` from the next step on (the Blocker after the human, in HIRL).

        Open episodes, their contexts and the counters go on; ``mode`` (None: keep) and ``label_store``
        (None: store no more labels) apply to the new overseer's decisions.
        """
        requires = getattr(overseer, "requires", frozenset())
        if "emulator" in requires and self._emulators is None:
            raise SaferlError(f"the {overseer.name} overseer simulates the envs: build them with it from the start")
        if "frame" in requires and self._contexts and self._contexts[0].state.frame is None:
            raise SaferlError(f"the {overseer.name} overseer reads frames: build the envs with with_frame=True")
        counters = self.intervention.counters
        self.intervention = Intervention(mode or self.intervention.mode, self.intervention.penalty, label_store,
                                         overseer_name=overseer.name if overseer else "none")
        self.intervention.counters = counters
        self.overseer = overseer
        self._keep_recent()
        self._prefetch()

    def _prefetch(self) -> None:
        """Tell the overseer which contexts it reviews next, if it can start on them early (the Blocker can).

        Only when the envs step in other processes, whose cores are idle while the agent chooses: with
        in-process envs the background thread slowed DQN on 1 env (45.7 against 57.2 fps side by side),
        while on SharedMemoryVecEnv it sped up DQN on 4 envs (185.6 against 168.9) and PPO on 8."""
        prefetch = getattr(self.overseer, "prefetch", None)
        if prefetch is not None and self._contexts and not isinstance(self.venv, DummyVecEnv):
            prefetch(self._contexts)

    @property
    def counters(self) -> SafetyCounters:
        """The running safety counters over all envs."""
        return self.intervention.counters

    @property
    def contexts(self) -> list[StepContext]:
        """What each env's next decision is taken in (``state.frame`` is the frame the overseer will see)."""
        return list(self._contexts)

    def _new_episode(self, index: int, info: dict[str, Any]) -> StepContext:
        """The context of env ``index``'s first step in a fresh episode."""
        if "game_state" not in info:
            raise RuntimeError("VecOversight needs envs built on GroundTruthWrapper (info['game_state'] is missing)")
        context = StepContext(
            game=self.game,
            state=info["game_state"],
            episode=self._next_episode,
            emulator=self._emulators[index] if self._emulators else None,
            env_index=index,
        )
        self._next_episode += 1
        return context

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        self._contexts = [self._new_episode(i, info) for i, info in enumerate(self.venv.reset_infos)]
        self._returns[:] = 0.0
        self._prefetch()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        proposed = np.asarray(actions).astype(np.int64).reshape(self.num_envs)
        if self.overseer is None:
            decisions = [ALLOW] * self.num_envs
        else:
            decisions = self.overseer.review_batch(self._contexts, proposed.tolist())
        executed = np.array([self.intervention.executed_action(context, decision, int(action))
                             for context, decision, action in zip(self._contexts, decisions, proposed)], np.int64)
        if isinstance(self.venv, SharedMemoryVecEnv):  # the counterfactuals ride on the step: no round trip
            self._probed, counterfactuals = executed != proposed, {}
            self.venv.step_async(executed, probes=np.where(self._probed, proposed, -1))
        else:
            self._probed, counterfactuals = None, self._counterfactuals(proposed, executed)
            self.venv.step_async(executed)
        self._pending = [(context, decision, int(proposed[i]), int(executed[i]), counterfactuals.get(i))
                         for i, (context, decision) in enumerate(zip(self._contexts, decisions))]

    def _counterfactuals(self, proposed: np.ndarray, executed: np.ndarray) -> dict[int, bool]:
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
        held = self.venv.probed_catastrophes() if self._probed is not None else None
        if self._recent[0].maxlen:
            for recent, (context, decision, proposed, executed, _) in zip(self._recent, self._pending):
                if not decision.label:
                    recent.append((context, proposed, executed))
        hindsight = {i: self._hindsight(i) for i in range(self.num_envs) if infos[i]["catastrophe"]}
        for i, (context, decision, proposed, executed, counterfactual) in enumerate(self._pending):
            if held is not None and self._probed[i]:
                counterfactual = bool(held[i])
            bonus, outcome = self.intervention.record(
                context, decision, proposed, executed, bool(infos[i]["catastrophe"]), counterfactual,
                hindsight.get(i, ())
            )
            rewards[i] += bonus
            self._returns[i] += rewards[i]
            infos[i].update(outcome.as_info())
            if dones[i]:
                self._recent[i].clear()
                self.intervention.end_episode(i, float(self._returns[i]))
                self._returns[i] = 0.0
                self._contexts[i] = self._new_episode(i, self.venv.reset_infos[i])
            else:
                step = context.step + int(executed >= 0)
                self._contexts[i] = replace(context, state=infos[i]["game_state"], step=step)
        for asked in hindsight.values():
            self.intervention.store_hindsight(asked)
        self._prefetch()
        return obs, rewards, dones, infos

    def _hindsight(self, index: int) -> list[Hindsight]:
        """The overseer's answers about env ``index``'s last unlabelled decisions, this step's included (after a
        catastrophe there; none when the overseer keeps no hindsight)."""
        recent = self._recent[index]
        if not recent:
            return []
        contexts, proposed, executed = zip(*recent)
        answers = self.overseer.review_hindsight(list(contexts), list(proposed))
        recent.clear()
        return list(zip(contexts, answers, proposed, executed))
