"""Oversight: decisions, overseers, the wrappers that apply them, labels and safety metrics."""

from __future__ import annotations

from typing import Any

from saferl.errors import SaferlError
from saferl.oversight.decision import ALLOW, BaseOverseer, Decision, Overseer, StepContext
from saferl.oversight.ground_truth import HOLD, GroundTruthWrapper
from saferl.oversight.intervention import Intervention, Mode, Outcome
from saferl.oversight.lookahead import LookaheadOverseer
from saferl.oversight.metrics import SafetyCallback, SafetyCounters
from saferl.oversight.scripted import ScriptedOverseer
from saferl.oversight.wrapper import OversightWrapper

OVERSEERS = ("none", "scripted", "lookahead", "deferring", "human")
BLOCKER_PREFIX = "blocker:"


def make_overseer(name: str, seed: int | None = None, game: str | None = None, **options: Any) -> Overseer | None:
    """The overseer called ``name`` (``none`` gives None: nobody reviews), built with ``options``.

    ``deferring`` decides with its own Blocker ensemble and asks ``asker`` (an overseer name, default scripted,
    built with ``asker_options``) where it is unsure; its other options are
    :class:`~saferl.oversight.deferring.DeferralConfig` fields.
    ``blocker:DIR`` is the Blocker (or ensemble) saved in folder DIR; with ``game`` it must be that game's.
    ``human`` is a person in a pygame window; its options are ``pace`` (ms per frame), ``scale`` (zoom),
    ``blocker`` (a Blocker folder whose score it shows) and ``label_store`` (where its decisions go, for undo).
    """
    if name == "none":
        return None
    if name == "deferring":
        from saferl.oversight.deferring import make_deferring_overseer

        return make_deferring_overseer(seed, game, **options)
    try:
        if name == "scripted":
            return ScriptedOverseer(seed=seed, **options)
        if name == "lookahead":
            return LookaheadOverseer(**options)
        if name == "human":
            from saferl.human_ui import HumanOverseer, load_advisor

            blocker = options.pop("blocker", None)
            return HumanOverseer(blocker=load_advisor(blocker, game) if blocker else None, **options)
    except TypeError as err:
        raise SaferlError(f"bad options {options} for the {name} overseer (overseer_options): {err}") from None
    if name.startswith(BLOCKER_PREFIX):
        return _blocker_overseer(name[len(BLOCKER_PREFIX):], game)
    raise SaferlError(f"unknown overseer {name!r} (--overseer): choose one of {', '.join(OVERSEERS)}, "
                      f"or {BLOCKER_PREFIX}DIR for a trained Blocker")


def check_overseer(name: str, game: str, options: dict[str, Any]) -> None:
    """Build (and close) the overseer ``name`` with ``options`` once, so that a wrong name or option fails before any
    work; nothing is shown (a person's window opens on its first frame)."""
    overseer = make_overseer(name, seed=0, game=game, **dict(options))
    close = getattr(overseer, "close", None)
    if close is not None:
        close()


def _blocker_overseer(folder: str, game: str | None) -> Overseer:
    """The BlockerOverseer of the Blocker or ensemble saved in ``folder``."""
    from saferl.blocker import BlockerOverseer
    from saferl.blocker.ensemble import load_scorer

    if not folder:
        raise SaferlError(f"--overseer {BLOCKER_PREFIX}DIR needs the folder of a trained Blocker "
                          "(saferl train-blocker LABELS... --game GAME --out DIR)")
    try:
        scorer = load_scorer(folder, game)
    except SaferlError as err:
        raise SaferlError(f"--overseer {BLOCKER_PREFIX}{folder}: {err}") from None
    return BlockerOverseer(scorer)


__all__ = [
    "check_overseer",
    "ALLOW",
    "BLOCKER_PREFIX",
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
