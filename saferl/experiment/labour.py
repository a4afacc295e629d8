"""Human labour: the frames a person looked at and the seconds spent, and what they come to at 100M frames.

The paper's person watched every frame of the oversight phase (4.5 hours) and notes that RL can need
100M frames: watching all of them would take more than a year. Here each run's person is on duty for a
phase (``hirl``: until the handover; ``penalty_only``: the whole run, since its penalties need them all
along; ``none``: never) and looks at the frames they are asked about: every one when they watch every
frame, fewer under the deferring overseer. A run's rate, labels per agent step of that phase, is
extrapolated to a phase of 100M frames and compared with watching every frame of it. Seconds per
decision are the run's own (``human_seconds`` / ``human_labels``) where it recorded any; the scripted
stand-in records none unless given ``seconds_per_decision``, and then the paper's window pace, 0.5 s a
frame, is assumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FRAMES = 100_000_000
ASSUMED_SECONDS = 0.5


def human_labour(summary: Mapping[str, Any], frameskip: float) -> dict[str, Any]:
    """One run's human labour (see the module docstring) from its ``summary.json`` row."""
    condition = summary.get("condition")
    steps = {"hirl": summary.get("handover_step"), "penalty_only": summary.get("steps")}.get(condition) or 0
    labels = float(summary.get("human_labels") or 0)
    seconds = float(summary.get("human_seconds") or 0.0)
    share = labels / steps if steps else 0.0
    per_decision = seconds / labels if seconds and labels else ASSUMED_SECONDS
    watch_all = FRAMES / frameskip * per_decision / 3600.0
    return {
        "condition": condition,
        "human_labels": labels,
        "duty_frames": steps * frameskip,
        "share_of_every_frame": share,
        "human_seconds": seconds,
        "seconds_per_decision": per_decision,
        "seconds_measured": bool(seconds and labels),
        "hours_at_100m_frames": share * watch_all,
        "watch_every_frame_hours_at_100m_frames": watch_all,
    }


COLUMNS = {
    "condition": "condition",
    "human_labels": "frames looked at (labels)",
    "duty_frames": "frames on duty",
    "share_of_every_frame": "share of every frame",
    "human_seconds": "seconds spent",
    "seconds_per_decision": "s a decision",
    "hours_at_100m_frames": "hours at 100M frames",
    "watch_every_frame_hours_at_100m_frames": "watching every frame: hours at 100M",
}
