"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016), as the paper trained its agents
(universe-starter-agent's algorithm, in PyTorch). One concept per module:

* ``config``: :class:`A3CConfig`, the hyperparameters;
* ``network``: :class:`ActorCritic`, the classic A3C CNN (optionally an LSTM(256)), and its initialisations;
* ``optimizer``: :class:`SharedAdam`, Adam whose statistics live in shared memory;
* ``worker``: one worker process's loop (rollout, n-step returns, loss, Hogwild update, reports);
* ``processes``: starting and stopping the worker processes;
* ``algorithm``: :class:`A3C`, which builds the shared model, runs and supervises the workers, logs, predicts;
* ``io``: save and load (safetensors and ``a3c.json``, checked before it is trusted).

The agent learns from its own proposed action (the one it passed to ``env.step``); the reward already
carries the penalty of a blocked action (see :class:`~saferl.oversight.wrapper.OversightWrapper`).
"""

from saferl.agents.a3c.algorithm import A3C
from saferl.agents.a3c.config import A3CConfig
from saferl.agents.a3c.io import A3CRecord
from saferl.agents.a3c.network import ActorCritic
from saferl.agents.a3c.optimizer import SharedAdam
from saferl.agents.a3c.worker import EnvFactory, n_step_returns

__all__ = ["A3C", "A3CConfig", "A3CRecord", "ActorCritic", "EnvFactory", "SharedAdam", "n_step_returns"]
