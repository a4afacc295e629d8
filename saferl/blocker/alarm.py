"""The alarm of a degenerate Blocker: one that blocks far more than its teacher did, or whose threshold collapsed.

A Blocker that blocks nearly everything looks safe by the false-negative count and is not: its replacements run
the agent wherever they lead (a Road Runner Blocker that blocked 80% of actions, the safe action included, ran the
runner up-left on every block). Its share of blocked validation decisions, set beside the share its teacher
blocked, shows it before it takes over.
"""

from __future__ import annotations

FACTOR = 2.0  # alarm when the Blocker blocks more than FACTOR x the teacher's share ...
POINTS = 0.10  # ... plus these points
COLLAPSED = 0.01  # or when its threshold is a block probability below this


def degeneration_alarm(block_share: float, teacher_share: float, threshold: float) -> str | None:
    """One line saying why a Blocker is degenerate, or None when it is not.

    :param block_share: the share of validation decisions the Blocker blocks.
    :param teacher_share: the share its teacher (the overseer that labelled them) blocked.
    :param threshold: its block threshold as a probability.
    """
    if block_share > FACTOR * teacher_share + POINTS:
        return (f"the Blocker blocks {block_share:.1%} of the validation decisions, its teacher blocked "
                f"{teacher_share:.1%} (the limit is twice that plus 10 points): it is degenerate")
    if threshold < COLLAPSED:
        return (f"the Blocker's threshold collapsed to a block probability of {threshold:.3g} (below {COLLAPSED}): "
                "a validation block it scores near zero sets it")
    return None
