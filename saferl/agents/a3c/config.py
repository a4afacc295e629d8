"""A3C's hyperparameters (:class:`A3CConfig`), checked when built."""

from __future__ import annotations

from dataclasses import dataclass

from saferl.errors import SaferlError


@dataclass(frozen=True)
class A3CConfig:
    """A3C's hyperparameters (defaults: universe-starter-agent's).

    :param n_workers: actor-learner processes, one env each.
    :param n_steps: the longest rollout per update (n-step returns); a rollout also ends with its episode.
    :param gamma: discount factor.
    :param learning_rate: Adam's step size.
    :param entropy_coef: weight of the entropy bonus.
    :param value_coef: weight of the value loss ``0.5 * (R - V)^2``.
    :param max_grad_norm: a worker's gradient is clipped to this global norm before it is applied.
    :param lstm: an LSTM(256) after the conv trunk (truncated backprop over each rollout).
    :param seed: seeds the initial weights and the workers' action sampling (the env factory seeds the envs).
    :param device: where :meth:`A3C.predict` runs (``auto``: cuda when present). Workers always act and learn
        on CPU, where the shared model lives; saved weights are CPU tensors whatever the device.
    """

    n_workers: int = 4
    n_steps: int = 20
    gamma: float = 0.99
    learning_rate: float = 1e-4
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 40.0
    lstm: bool = False
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = {
            "n_workers": self.n_workers >= 1,
            "n_steps": self.n_steps >= 1,
            "gamma": 0.0 <= self.gamma <= 1.0,
            "learning_rate": self.learning_rate > 0,
            "entropy_coef": self.entropy_coef >= 0,
            "value_coef": self.value_coef >= 0,
            "max_grad_norm": self.max_grad_norm > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise SaferlError(f"A3C {name}={getattr(self, name)!r} is out of range "
                                  "(n_workers, n_steps >= 1; gamma in [0, 1]; learning_rate, max_grad_norm > 0; "
                                  "coefficients >= 0)")
