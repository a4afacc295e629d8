"""Random network distillation (Burda et al., "Exploration by Random Network Distillation", 2018): a reward
bonus for frames the agent has rarely seen, for games where the overseer keeps a random policy from the
states that earn reward (Pong under its rule: ``docs/results/pong-learning/README.md``).

A fixed, randomly initialized network (the target) maps the newest frame to features; a second network (the
predictor) learns to reproduce them on every frame the agent sees. Its error is small on familiar frames and
large on new ones; that error, scaled by the running spread of its discounted sum (so one coefficient fits
every game), is added to the agent's reward. The predictor takes one gradient step on each step's frames. The
game's return and every safety figure are counted below this wrapper and never include the bonus.

Switched on by the hyperparameter ``rnd_coef`` (SB3 agents; 0, the default, leaves it off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn

from saferl.errors import SaferlError

STATE_FILE = "curiosity.pt"
FEATURES = 128
CLIP = 5.0  # normalized frames are clipped to this many standard deviations
WARMUP_STEPS = 128  # vec env steps that only gather frame statistics, before any bonus


def _conv_stack() -> list[nn.Module]:
    return [nn.Conv2d(1, 16, 8, stride=4), nn.LeakyReLU(), nn.Conv2d(16, 32, 4, stride=2), nn.LeakyReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.LeakyReLU(), nn.Flatten()]


def _networks(frame_shape: tuple[int, int], seed: int) -> tuple[nn.Module, nn.Module]:
    """The target and the predictor for frames of ``frame_shape``, initialized from ``seed`` alone."""
    generator = torch.Generator().manual_seed(seed)
    conv_out = int(nn.Sequential(*_conv_stack())(torch.zeros(1, 1, *frame_shape)).shape[1])
    target = nn.Sequential(*_conv_stack(), nn.Linear(conv_out, FEATURES))
    predictor = nn.Sequential(*_conv_stack(), nn.Linear(conv_out, 256), nn.ReLU(), nn.Linear(256, FEATURES))
    for net in (target, predictor):
        for layer in net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(layer.weight, gain=2 ** 0.5, generator=generator)
                nn.init.zeros_(layer.bias)
    target.requires_grad_(False)
    return target, predictor


class RNDBonus(VecEnvWrapper):
    """Adds ``coef`` times the normalized novelty of each step's newest frame to its reward.

    :param venv: frame-stacked image observations, channels last (``n x 84 x 84 x stack``), as
        :class:`~stable_baselines3.common.vec_env.VecFrameStack` gives them.
    :param coef: the bonus's weight beside the game's reward (> 0).
    :param seed: seeds the target and predictor networks.
    :param device: where the two networks run.
    :param learning_rate: the predictor's Adam step size.
    :param gamma: the discount of the intrinsic return whose spread scales the bonus.
    """

    def __init__(self, venv: VecEnv, coef: float, seed: int = 0, device: torch.device | str = "cpu",
                 learning_rate: float = 1e-4, gamma: float = 0.99) -> None:
        super().__init__(venv)
        shape = venv.observation_space.shape
        if shape is None or len(shape) != 3:
            raise SaferlError(f"rnd_coef needs stacked image observations (n x H x W x stack), not {shape}")
        if not coef > 0:
            raise SaferlError(f"rnd_coef={coef!r} must be > 0 to switch the exploration bonus on")
        self.coef, self.gamma, self.device = float(coef), float(gamma), torch.device(device)
        self.frame_shape = (int(shape[0]), int(shape[1]))
        self.target, self.predictor = (net.to(self.device) for net in _networks(self.frame_shape, seed))
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=learning_rate)
        self.frame_stats = RunningMeanStd(shape=self.frame_shape)
        self.return_stats = RunningMeanStd(shape=())
        self.intrinsic_return = np.zeros(self.num_envs)
        self.steps = 0
        self.last_bonus = 0.0  # the mean bonus of the last step, for logging

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self.frame_stats.update(obs[..., -1].astype(np.float64))
        return obs

    def _next_frames(self, obs: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]) -> np.ndarray:
        """Each env's newest frame after the step: the episode's last frame where one ended."""
        frames = obs[..., -1].copy()
        for i in np.flatnonzero(dones):
            terminal = infos[i].get("terminal_observation")
            if terminal is not None:
                frames[i] = terminal[..., -1]
        return frames

    def novelty(self, frames: np.ndarray, learn: bool = True) -> np.ndarray:
        """The predictor's squared error on ``frames`` (n x H x W, uint8) after normalization; with ``learn`` the
        predictor then takes one step on them."""
        mean = torch.as_tensor(self.frame_stats.mean, dtype=torch.float32, device=self.device)
        std = torch.as_tensor(np.sqrt(self.frame_stats.var) + 1e-8, dtype=torch.float32, device=self.device)
        x = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
        x = ((x - mean) / std).clamp(-CLIP, CLIP).unsqueeze(1)
        with torch.no_grad():
            wanted = self.target(x)
        error = (self.predictor(x) - wanted).pow(2).mean(dim=1)
        if learn:
            self.optimizer.zero_grad()
            error.mean().backward()
            self.optimizer.step()
        return error.detach().cpu().numpy().astype(np.float64)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        frames = self._next_frames(obs, dones, infos)
        self.frame_stats.update(frames.astype(np.float64))
        self.steps += 1
        if self.steps <= WARMUP_STEPS:
            self.last_bonus = 0.0
            return obs, rewards, dones, infos
        error = self.novelty(frames)
        self.intrinsic_return = self.intrinsic_return * self.gamma + error
        self.return_stats.update(self.intrinsic_return)
        bonus = self.coef * error / np.sqrt(self.return_stats.var + 1e-8)
        self.last_bonus = float(bonus.mean())
        return obs, rewards + bonus.astype(rewards.dtype), dones, infos

    def state_dict(self) -> dict[str, Any]:
        """Everything resuming needs, as tensors and numbers (loadable with ``weights_only``)."""
        as_tensor = torch.from_numpy
        return {"target": self.target.state_dict(), "predictor": self.predictor.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "frame_mean": as_tensor(np.asarray(self.frame_stats.mean)),
                "frame_var": as_tensor(np.asarray(self.frame_stats.var)), "frame_count": self.frame_stats.count,
                "return_mean": as_tensor(np.asarray(self.return_stats.mean)),
                "return_var": as_tensor(np.asarray(self.return_stats.var)),
                "return_count": self.return_stats.count,
                "intrinsic_return": as_tensor(self.intrinsic_return), "steps": self.steps}

    def save(self, folder: Path) -> None:
        torch.save(self.state_dict(), folder / STATE_FILE)

    def load(self, folder: Path) -> None:
        """Restore what :meth:`save` wrote to ``folder``.

        :raises SaferlError: naming the file when it is missing, damaged or of other networks.
        """
        path = folder / STATE_FILE
        if not path.is_file():
            raise SaferlError(f"{path} is missing: the checkpoint was saved without the exploration bonus "
                              "(rnd_coef); resume it with the hyperparameters it was started with")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.target.load_state_dict(state["target"])
            self.predictor.load_state_dict(state["predictor"])
            self.optimizer.load_state_dict(state["optimizer"])
            frame_mean, frame_var = state["frame_mean"].cpu().numpy(), state["frame_var"].cpu().numpy()
            intrinsic_return = state["intrinsic_return"].cpu().numpy()
            if frame_mean.shape != self.frame_shape or frame_var.shape != self.frame_shape \
                    or intrinsic_return.shape != (self.num_envs,):
                raise ValueError(f"statistics of frames {frame_mean.shape} for {intrinsic_return.shape} envs")
            numbers = (frame_mean, frame_var, intrinsic_return, state["return_mean"].cpu().numpy(),
                       state["return_var"].cpu().numpy())
            if not all(np.isfinite(array).all() for array in numbers):
                raise ValueError("NaN or infinite statistics")
            self.frame_stats.mean, self.frame_stats.var = frame_mean, frame_var
            self.frame_stats.count = float(state["frame_count"])
            self.return_stats.mean, self.return_stats.var = numbers[3], numbers[4]
            self.return_stats.count = float(state["return_count"])
            self.intrinsic_return, self.steps = intrinsic_return, int(state["steps"])
        except Exception as err:  # noqa: BLE001 - torch's unpickler and load_state_dict raise many kinds
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SaferlError(f"{path} is not the exploration state of this agent ({first}); the checkpoint "
                              "is damaged") from None
