"""What the attacks share: envs overseen by the attacked Blocker, a recorder of the catastrophes it lets
through (with the frames), and the result of one search.

The Blocker oversees in ``replace`` mode, as it would in HIRL's third phase: a block is enforced, so a
catastrophe happens only where the Blocker let it through (or, rarely, where even the replacement
could not avoid it). The scripted rule, enforcing the same way, lets none through in our measurements
(README), so every false negative found is the Blocker's own failure, in the states its own
oversight leads the policy to. (``observe`` mode would let a policy sit in the catastrophe zone and
count every step there against the Blocker, though no decision of its could have helped by then.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from saferl.games import Game
from saferl.oversight.vec_wrapper import VecOversight


@dataclass
class Finding:
    """One false negative: a step whose catastrophe the Blocker let through (or, for ``perturb``, a flipped block).

    :param images: what to show: the frame the Blocker saw and the one after (RGB uint8).
    :param rule_blocks: whether the game's blocking rule (the simulated human) would have blocked it.
    """

    source: str
    step: int
    env_index: int
    proposed_action: int
    score: float
    rule_blocks: bool
    images: tuple[np.ndarray, ...] = field(repr=False)
    note: str = ""


@dataclass
class MethodResult:
    """What one search found.

    :param steps: agent steps (all envs together) the search took.
    :param catastrophes: catastrophes that happened under the Blocker.
    :param false_negatives: steps holding a catastrophe the Blocker let through.
    :param incidents: runs of consecutive false-negative steps in one env (one way in, however long it lasted).
    :param rule_would_block: incidents whose first step the game's rule (the simulated human) would have blocked.
    :param extra: method-specific figures.
    """

    method: str
    source: str
    steps: int
    catastrophes: int
    false_negatives: int
    incidents: int
    rule_would_block: int = 0
    findings: list[Finding] = field(default_factory=list, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_1000_steps(self) -> float:
        """False negatives per 1,000 agent steps."""
        return 1000.0 * self.false_negatives / self.steps if self.steps else 0.0

    def row(self) -> dict[str, Any]:
        """The figures as one plain row (for the report table and JSON)."""
        return {"method": self.method, "source": self.source, "steps": self.steps, "catastrophes": self.catastrophes,
                "false_negatives": self.false_negatives, "per_1000_steps": round(self.per_1000_steps, 3),
                "incidents": self.incidents, "rule_would_block": self.rule_would_block, **self.extra}


class FalseNegativeRecorder(VecEnvWrapper):
    """Over a :class:`VecOversight`: keeps the frame of each decision and records every false negative.

    :param max_findings: keep the frames of at most this many incidents (each incident's first step).
    :param keep_blocks: also keep up to this many (frame, action) of steps the Blocker blocked and the rule
        would have blocked too (true blocks: what ``perturb`` attacks).
    :param steps: the steps the search will take (the progress bar's length; None: unknown).
    :param progress: show a progress bar.
    """

    def __init__(self, venv: VecOversight, game: Game, source: str, max_findings: int = 20,
                 keep_blocks: int = 0, steps: int | None = None, progress: bool = False) -> None:
        from tqdm import tqdm

        super().__init__(venv)
        venv.keep_frames()  # it keeps the frames of blocks and false negatives: they must reach this process
        self._bar = tqdm(total=steps, desc=f"attack: {source}", unit="step", disable=not progress)
        self.oversight, self.game, self.source = venv, game, source
        self.max_findings, self.keep_blocks = max_findings, keep_blocks
        self.findings: list[Finding] = []
        self.blocks: list[tuple[np.ndarray, int]] = []
        self.incidents = 0
        self.rule_incidents = 0
        self._inside = np.zeros(venv.num_envs, bool)
        self._before: list[Any] = []

    def reset(self) -> VecEnvObs:
        self._inside[:] = False
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self._before = [context.state for context in self.oversight.contexts]
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._bar.update(self.num_envs)
        for i, info in enumerate(infos):
            state, action = self._before[i], int(info["proposed_action"])
            if info["blocked"] and len(self.blocks) < self.keep_blocks and self.game.should_block(state, action):
                self.blocks.append((state.frame, action))
            if info["false_negative"] and not self._inside[i]:
                rule_blocks = bool(self.game.should_block(state, action))
                self.incidents += 1
                self.rule_incidents += rule_blocks
                if len(self.findings) < self.max_findings:
                    after = info["game_state"].frame
                    self.findings.append(Finding(self.source, int(self.oversight.counters.totals["steps"]), i, action,
                                                 float(info["score"]), rule_blocks,
                                                 (state.frame,) if after is None else (state.frame, after)))
            self._inside[i] = bool(info["false_negative"]) and not dones[i]
        return obs, rewards, dones, infos

    def close(self) -> None:
        self._bar.close()
        self.venv.close()

    def result(self, method: str, extra: dict[str, Any] | None = None) -> MethodResult:
        """The search's figures so far."""
        totals = self.oversight.counters.totals
        return MethodResult(method, self.source, int(totals["steps"]), int(totals["catastrophes"]),
                            int(totals["false_negatives"]), self.incidents, self.rule_incidents, list(self.findings),
                            dict(extra or {}))


def overseen_envs(scorer: Any, game: Game, source: str, n_envs: int, seed: int, max_findings: int,
                  keep_blocks: int = 0, preprocess: bool = True, steps: int | None = None,
                  progress: bool = False) -> FalseNegativeRecorder:
    """``n_envs`` envs of ``game`` overseen by ``scorer`` (a Blocker or ensemble) in ``replace`` mode, recorded
    (with a progress bar over ``steps`` when ``progress``)."""
    from saferl.blocker import BlockerOverseer
    from saferl.oversight.envs import make_vec_env

    venv = make_vec_env(game, n_envs=n_envs, overseer=BlockerOverseer(scorer), mode="replace", seed=seed,
                        with_frame=True, preprocess=preprocess)
    return FalseNegativeRecorder(venv, game, source, max_findings, keep_blocks, steps, progress)


def train_ppo(env: Any, game: Game, seed: int, steps: int, device: str = "auto") -> Any:
    """An SB3 PPO agent (the zoo's Atari hyperparameters, rollouts shortened to fit ``steps``) trained on ``env``
    (already frame-stacked) for ``steps`` agent steps."""
    from stable_baselines3 import PPO

    from saferl.agents import load_hyperparams
    from saferl.agents.sb3_settings import sb3_kwargs
    from saferl.device import resolve_device

    n_steps = int(np.clip(steps // env.num_envs, 8, 128))
    rollout = n_steps * env.num_envs
    batches = -(-rollout // 256)
    while rollout % batches:  # minibatches of one size, at most the zoo's 256
        batches += 1
    params = load_hyperparams("ppo", game.name, {"n_steps": n_steps, "batch_size": rollout // batches})
    model = PPO(params.get("policy", "CnnPolicy"), env, seed=seed, verbose=0, device=resolve_device(device),
                **sb3_kwargs(params))
    model.learn(steps)
    return model
