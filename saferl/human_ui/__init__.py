"""The human side of oversight: the pygame window a person blocks actions in, and the offline label review.

- :mod:`~saferl.human_ui.window`: rendering (the frame scaled, danger zones, status bar, legend).
- :mod:`~saferl.human_ui.keys`: the key maps, their legends, and :class:`OversightQuit`.
- :mod:`~saferl.human_ui.overseer`: :class:`HumanOverseer`, synchronous oversight at a pace.
- :mod:`~saferl.human_ui.review`: browsing and relabelling a label store (``saferl review``).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on stdout otherwise

from saferl.human_ui.keys import OversightQuit  # noqa: E402
from saferl.human_ui.overseer import DEFAULT_PACE_MS, HumanOverseer, check_pace, load_advisor  # noqa: E402
from saferl.human_ui.window import DEFAULT_SCALE, Window, check_scale, render_frame  # noqa: E402

__all__ = ["DEFAULT_PACE_MS", "DEFAULT_SCALE", "HumanOverseer", "OversightQuit", "Window", "check_pace",
           "check_scale", "load_advisor", "render_frame"]
