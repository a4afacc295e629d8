"""The A3C network (:class:`ActorCritic`) and universe-starter-agent's weight initialisations."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]
HIDDEN = 256


def _glorot(layer: nn.Module) -> nn.Module:
    """Uniform Glorot weights and zero biases (universe-starter-agent's conv init)."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _normalized_columns(layer: nn.Linear, std: float) -> nn.Linear:
    """Gaussian weights scaled so each output unit's weight vector has norm ``std`` (universe-starter-agent's
    init of the policy (0.01) and value (1.0) heads)."""
    with torch.no_grad():
        weight = torch.randn_like(layer.weight)
        layer.weight.copy_(weight * std / weight.norm(dim=1, keepdim=True))
        layer.bias.zero_()
    return layer


class ActorCritic(nn.Module):
    """The classic A3C network: Conv 16 8x8/4, Conv 32 4x4/2, FC 256 [, LSTM 256], policy and value heads.

    Takes uint8 observations ``(N, C, H, W)`` and scales them by 1/255.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, lstm: bool = False) -> None:
        super().__init__()
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.n_actions = int(n_actions)
        self.trunk = nn.Sequential(
            _glorot(nn.Conv2d(self.obs_shape[0], 16, 8, stride=4)), nn.ReLU(),
            _glorot(nn.Conv2d(16, 32, 4, stride=2)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.trunk(torch.zeros(1, *self.obs_shape)).shape[1]
        self.fc = _glorot(nn.Linear(n_flat, HIDDEN))
        self.lstm = nn.LSTMCell(HIDDEN, HIDDEN) if lstm else None
        if self.lstm is not None:
            nn.init.zeros_(self.lstm.bias_ih)
            nn.init.zeros_(self.lstm.bias_hh)
        self.policy = _normalized_columns(nn.Linear(HIDDEN, self.n_actions), 0.01)
        self.value = _normalized_columns(nn.Linear(HIDDEN, 1), 1.0)

    def initial_state(self, n: int = 1) -> LSTMState | None:
        """The LSTM state at the start of an episode, for ``n`` envs (None without an LSTM)."""
        if self.lstm is None:
            return None
        return torch.zeros(n, HIDDEN), torch.zeros(n, HIDDEN)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.trunk(obs.float() / 255.0)))

    def forward(self, obs: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """One step of ``N`` envs: ``(logits (N, A), values (N,), next state)``."""
        x = self._features(obs)
        if self.lstm is not None:
            state = self.lstm(x, state if state is not None else self.initial_state(len(obs)))
            x = state[0]
        return self.policy(x), self.value(x).squeeze(-1), state

    def unroll(self, obs: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``T`` consecutive steps of one env from ``state``: ``(logits (T, A), values (T,), last state)``.

        The conv trunk runs on the whole rollout at once; the LSTM steps through it in order.
        """
        if self.lstm is None:
            return self.forward(obs)
        x = self._features(obs)
        state = state if state is not None else self.initial_state(1)
        hidden = []
        for t in range(len(x)):
            state = self.lstm(x[t : t + 1], state)
            hidden.append(state[0])
        h = torch.cat(hidden)
        return self.policy(h), self.value(h).squeeze(-1), state
