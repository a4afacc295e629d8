"""Oversight: the overseer protocol (:mod:`~saferl.oversight.decision`), what a block does
(:mod:`~saferl.oversight.intervention`), the wrappers that apply it to one env or a batch, the rule-based
overseers (scripted, look-ahead) and the safety counters.

Depends on :mod:`saferl.env`, :mod:`saferl.labels` and :mod:`saferl.games`; overseers are built by name in
:mod:`saferl.registry`."""

from __future__ import annotations

from saferl.oversight.decision import ALLOW, BaseOverseer, Decision, Overseer, StepContext
from saferl.oversight.intervention import Intervention, Mode
from saferl.oversight.lookahead import LookaheadOverseer
from saferl.oversight.metrics import Outcome, SafetyCounters
from saferl.oversight.scripted import ScriptedOverseer
from saferl.oversight.wrapper import OversightWrapper

__all__ = [
    "ALLOW",
    "BaseOverseer",
    "Decision",
    "Intervention",
    "LookaheadOverseer",
    "Mode",
    "Outcome",
    "Overseer",
    "OversightWrapper",
    "SafetyCounters",
    "ScriptedOverseer",
    "StepContext",
]
