"""The one place saferl touches stable-baselines3's private attributes, for what SB3 has no public API for:
resuming a run in a new process (the update and episode counters that logging and exploration read) and
schedules that span a run of several ``learn`` calls. ``tests/test_sb3_internals.py`` fails loudly when an SB3
upgrade renames any of them."""

from __future__ import annotations

from typing import Any

from saferl.errors import SaferlError

#: The private attributes of an SB3 algorithm saferl reads or sets (``_n_updates`` appears at the first update).
PRIVATE = ("_episode_num", "_current_progress_remaining", "_update_current_progress_remaining")


def check(model: Any) -> None:
    """Refuse an SB3 whose algorithms lack the private attributes saferl relies on."""
    missing = [name for name in PRIVATE if not hasattr(model, name)]
    if missing:
        import stable_baselines3

        raise SaferlError(f"stable-baselines3 {stable_baselines3.__version__} has no {', '.join(missing)} on "
                          f"{type(model).__name__}: install the version pyproject.toml names, or adapt "
                          "saferl/agents/sb3_internals.py")


def counters(model: Any) -> tuple[int, int]:
    """The model's gradient updates and finished episodes so far."""
    return int(getattr(model, "_n_updates", 0)), int(model._episode_num)


def restore_counters(model: Any, n_updates: int, episode_num: int) -> None:
    """Set the counters :func:`counters` read (a resumed run goes on counting from them)."""
    model._n_updates = n_updates
    model._episode_num = episode_num


def progress_over_run(model: Any, total_steps: int) -> None:
    """Make the progress remaining that SB3's schedules read fall over ``total_steps`` steps of the whole run,
    rather than over each ``learn`` call's total."""

    def update(num_timesteps: int, total_timesteps: int) -> None:
        model._current_progress_remaining = max(0.0, 1.0 - num_timesteps / max(total_steps, 1))

    model._update_current_progress_remaining = update
