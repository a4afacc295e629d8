"""Overseers by name: the one place that builds ``scripted``, ``lookahead``, ``deferring``, ``human`` and
``blocker:DIR`` from a name and options (the CLI's ``--overseer``, an experiment's ``overseer``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saferl.errors import SaferlError
from saferl.oversight.decision import Overseer
from saferl.oversight.lookahead import LookaheadOverseer
from saferl.oversight.scripted import ScriptedOverseer

OVERSEERS = ("none", "scripted", "lookahead", "deferring", "human")
BLOCKER_PREFIX = "blocker:"


def make_overseer(name: str, seed: int | None = None, game: str | None = None, **options: Any) -> Overseer | None:
    """The overseer called ``name`` (``none`` gives None: nobody reviews), built with ``options``.

    ``deferring`` decides with its own Blocker ensemble and asks ``asker`` (an overseer name, default scripted,
    built with ``asker_options``) where it is unsure; its other options are
    :class:`~saferl.blocker.deferring.DeferralConfig` fields.
    ``blocker:DIR`` is the Blocker (or ensemble) saved in folder DIR; with ``game`` it must be that game's.
    ``lookahead`` and ``blocker:DIR`` take ``prefer``: the actions tried first as a blocked action's replacement
    (the first one that passes is executed; the game's safe action follows).
    ``human`` is a person in a pygame window; its options are ``pace`` (ms per frame), ``scale`` (zoom),
    ``blocker`` (a Blocker folder whose score it shows) and ``label_store`` (where its decisions go, for undo).
    """
    if name == "none":
        return None
    if name == "deferring":
        from saferl.blocker.deferring import make_deferring_overseer

        asker, asker_options = options.pop("asker", "scripted"), options.pop("asker_options", None) or {}
        if not isinstance(asker, str) or asker in ("none", "deferring") or asker.startswith(BLOCKER_PREFIX):
            raise SaferlError(f"the deferring overseer's asker (overseer_options asker) must be someone who labels, "
                              f"such as scripted or lookahead, not {asker!r}")
        return make_deferring_overseer(make_overseer(asker, seed=seed, game=game, **asker_options), game, seed,
                                       **options)
    try:
        if name == "scripted":
            return ScriptedOverseer(seed=seed, **options)
        if name == "lookahead":
            return LookaheadOverseer(**options)
        if name.startswith(BLOCKER_PREFIX):
            return _blocker_overseer(name[len(BLOCKER_PREFIX):], game, **options)
        if name == "human":
            from saferl.human_ui import HumanOverseer, load_advisor

            blocker = options.pop("blocker", None)
            return HumanOverseer(blocker=load_advisor(blocker, game) if blocker else None, **options)
    except TypeError as err:
        raise SaferlError(f"bad options {options} for the {name} overseer (overseer_options): {err}") from None
    raise SaferlError(f"unknown overseer {name!r} (--overseer): choose one of {', '.join(OVERSEERS)}, "
                      f"or {BLOCKER_PREFIX}DIR for a trained Blocker")


def prior_label_stores(name: str, options: dict[str, Any]) -> list[str]:
    """The label stores the overseer ``name`` starts from, labels of earlier runs of the game (a deferring overseer's
    ``prior``): what a person has said about the game before this run, which the Blocker it hands over to learns
    from too."""
    if name != "deferring":
        return []
    from saferl.blocker.deferral_config import prior_stores

    return prior_stores(options.get("prior"))


def check_overseer(name: str, game: str, options: dict[str, Any]) -> None:
    """Build (and close) the overseer ``name`` with ``options`` once, so that a wrong name or option fails before any
    work; nothing is shown (a person's window opens on its first frame)."""
    overseer = make_overseer(name, seed=0, game=game, **dict(options))
    if overseer is not None:
        overseer.close()


def _blocker_overseer(folder: str, game: str | None, prefer: int | Sequence[int] = ()) -> Overseer:
    """The BlockerOverseer of the Blocker or ensemble saved in ``folder``, trying ``prefer`` first as replacements."""
    from saferl.blocker import BlockerOverseer
    from saferl.blocker.ensemble import load_scorer

    if not folder:
        raise SaferlError(f"--overseer {BLOCKER_PREFIX}DIR needs the folder of a trained Blocker "
                          "(saferl train-blocker LABELS... --game GAME --out DIR)")
    try:
        scorer = load_scorer(folder, game)
    except SaferlError as err:
        raise SaferlError(f"--overseer {BLOCKER_PREFIX}{folder}: {err}") from None
    return BlockerOverseer(scorer, prefer)


