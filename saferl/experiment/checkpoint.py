"""A run's checkpoint: ``checkpoint/`` holds the agent (what resuming needs) and ``state.json`` (where the run
stood), replaced as a whole so that a crash leaves the previous checkpoint or the new one, and checked by
:class:`RunState` before ``--resume`` trusts it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from saferl.agents import Agent
from saferl.errors import SaferlError
from saferl.files import write_json
from saferl.oversight.metrics import COUNTED
from saferl.schema import Strict, read_json, validate

STATE_FILE = "state.json"


def _counted(totals: dict[str, float]) -> dict[str, float]:
    """``totals`` when it holds every counted figure."""
    missing = [key for key in COUNTED if key not in totals]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    return totals


class Handover(Strict):
    """``state.json``'s ``handover``: the totals when the human phase ended."""

    step: int = Field(ge=0)
    catastrophes: float = Field(ge=0)
    human_seconds: float = Field(ge=0)
    overseer_stats: dict[str, Any] = Field(default_factory=dict)


class RunState(Strict):
    """``checkpoint/state.json``: where a run stood at its last checkpoint (written by :func:`save_checkpoint`)."""

    phase: int = Field(ge=0)
    totals: Annotated[dict[str, float], AfterValidator(_counted)] | None
    episodes_rows: int = Field(ge=0)
    curve_rows: int = Field(ge=0)
    handover: Handover | None
    blocker: dict[str, Any] | None
    seconds: float = Field(ge=0)
    checkpoint_bytes: int = Field(0, ge=0)


def folder_bytes(folder: Path) -> int:
    """The size of the files under ``folder`` (0 when there is none)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def read_state(checkpoint: Path, n_phases: int, condition: str, afresh: str) -> dict[str, Any]:
    """The saved state in ``checkpoint`` of an interrupted run of ``n_phases`` phases, checked against
    :class:`RunState`, or a fresh one when there is none.

    :param afresh: what to do when the checkpoint cannot be resumed (ends each error message).
    """
    path = checkpoint / STATE_FILE
    if not path.exists():
        return {"phase": 0, "totals": None, "episodes_rows": 0, "curve_rows": 0, "handover": None,
                "blocker": None, "seconds": 0.0, "checkpoint_bytes": 0}
    try:
        data = read_json(path)
    except SaferlError as err:
        raise SaferlError(f"{err}, or {afresh}") from None
    state = validate(RunState, data, str(path), afresh)
    if state.phase >= n_phases:
        raise SaferlError(f"{path}: phase {state.phase} is past the {n_phases} phase(s) of a "
                          f"{condition} run; {afresh}")
    return {**data, "checkpoint_bytes": state.checkpoint_bytes}  # as written: counts stay ints


def save_checkpoint(checkpoint: Path, agent: Agent, state: dict[str, Any]) -> None:
    """Write ``agent`` and ``state`` to ``checkpoint``: built beside it, then swapped in for the previous one."""
    folder = checkpoint.parent
    tmp = folder / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    agent.save(tmp / "agent")
    write_json(tmp / STATE_FILE, state)
    old = folder / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if checkpoint.exists():
        os.replace(checkpoint, old)
    os.replace(tmp, checkpoint)
    shutil.rmtree(old, ignore_errors=True)
