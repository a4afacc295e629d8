"""The optimizer shared by A3C's worker processes (:class:`SharedAdam`)."""

from __future__ import annotations

import math
from typing import Any

import torch


class SharedAdam:
    """Adam (Kingma and Ba 2015) whose statistics live in shared memory, so that every worker process
    updates the same moment estimates and step count (universe-starter-agent's A3C used Adam).

    Written out rather than subclassing ``torch.optim.Adam``: the update is a few lines, the state is plain
    shared tensors, and worker processes start faster without the machinery ``torch.optim`` imports.
    """

    def __init__(self, params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = torch.zeros(()).share_memory_()
        self.exp_avg = [torch.zeros_like(p).share_memory_() for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p).share_memory_() for p in self.params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor | None]) -> None:
        """Apply ``grads`` (one per parameter, in order) to the shared parameters, in place and without a lock."""
        beta1, beta2 = self.betas
        self.steps += 1
        t = float(self.steps)  # shared; a concurrent update may read the other's count (Hogwild)
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        for param, grad, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            if grad is None:
                continue
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            param.addcdiv_(m, (v.sqrt() / math.sqrt(bias2)).add_(self.eps), value=-self.lr / bias1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The statistics, as flat named tensors (for safetensors)."""
        state = {"steps": self.steps}
        for index, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            state[f"exp_avg.{index}"], state[f"exp_avg_sq.{index}"] = m, v
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy saved statistics into the shared tensors (in place, so they stay shared)."""
        for name, tensor in self.state_dict().items():
            if name not in state:
                raise KeyError(f"optimizer state {name!r} is missing")
            if state[name].shape != tensor.shape:
                raise RuntimeError(f"optimizer state {name!r} has shape {tuple(state[name].shape)}, "
                                   f"not {tuple(tensor.shape)}")
            tensor.copy_(state[name])
