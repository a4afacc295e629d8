"""Oversight: decisions, overseers, the wrappers that apply them, labels and safety metrics."""

from __future__ import annotations

from saferl.errors import SaferlError
from saferl.oversight.decision import ALLOW, BaseOverseer, Decision, Overseer, StepContext
from saferl.oversight.ground_truth import HOLD, GroundTruthWrapper
from saferl.oversight.intervention import Intervention, Mode, Outcome
from saferl.oversight.lookahead import LookaheadOverseer
from saferl.oversight.metrics import SafetyCallback, SafetyCounters
from saferl.oversight.scripted import ScriptedOverseer
from saferl.oversight.wrapper import OversightWrapper

OVERSEERS = ("none", "scripted", "lookahead")


def make_overseer(name: str, seed: int | None = None) -> Overseer | None:
    """The overseer called ``name`` (``none`` gives None: nobody reviews)."""
    if name == "none":
        return None
    if name == "scripted":
        return ScriptedOverseer(seed=seed)
    if name == "lookahead":
        return LookaheadOverseer()
    raise SaferlError(f"unknown overseer {name!r} (--overseer): choose one of {', '.join(OVERSEERS)}")


__all__ = [
    "ALLOW",
    "HOLD",
    "OVERSEERS",
    "BaseOverseer",
    "Decision",
    "GroundTruthWrapper",
    "Intervention",
    "LookaheadOverseer",
    "Mode",
    "Outcome",
    "Overseer",
    "OversightWrapper",
    "SafetyCallback",
    "SafetyCounters",
    "ScriptedOverseer",
    "StepContext",
    "make_overseer",
]
