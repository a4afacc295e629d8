"""Safety metrics: catastrophes, blocks, false negatives and positives, human labour.

Counted per episode and cumulatively, from the ``info`` of overseen steps, so the same counters
serve the wrappers, the CLI and the SB3 callback that logs them under ``safety/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """One overseen step, as counted and reported in ``info``."""

    proposed_action: int
    executed_action: int  # HOLD (-1) when a pruned step left the env where it was
    blocked: bool
    catastrophe: bool
    catastrophe_on_block: bool  # the catastrophe came on a step where a replacement ran
    false_negative: bool
    false_positive: bool
    score: float
    seconds: float
    labelled: bool  # the decision went into the label store
    penalty: float = 0.0  # the reward added for the block (0 when nothing was blocked)
    hindsight_labels: int = 0  # earlier decisions a person was asked about after this step's catastrophe
    hindsight_seconds: float = 0.0  # the person's time on them

    def as_info(self) -> dict[str, Any]:
        """The keys this step adds to ``info``."""
        return dict(vars(self))  # dataclasses.asdict deep-copies: a fifth of a step's time


#: The fields of an :class:`Outcome` the counters read (what a worker process sends for each step).
TALLIED = ("catastrophe", "catastrophe_on_block", "blocked", "false_negative", "false_positive", "labelled",
           "hindsight_labels", "seconds", "hindsight_seconds", "penalty")
COUNTED = ("steps", "catastrophes", "catastrophes_on_blocks", "blocks", "false_negatives", "false_positives", "labels",
           "human_seconds", "penalties")
#: An episode's row; ``cut`` is 1 when a stop (an A3C run's checkpoint or handover, where its workers end) cut the
#: episode short, not the game: its steps count toward the totals, its return toward no return statistic.
EPISODE_FIELDS = ("episode", "env_index", *COUNTED, "return", "game_return", "cut")


def _tally(outcome: Mapping[str, Any]) -> dict[str, float]:
    return {
        "steps": 1,
        "catastrophes": int(outcome["catastrophe"]),
        "catastrophes_on_blocks": int(outcome.get("catastrophe_on_block", False)),
        "blocks": int(outcome["blocked"]),
        "false_negatives": int(outcome["false_negative"]),
        "false_positives": int(outcome["false_positive"]),
        "labels": int(outcome.get("labelled", False)) + int(outcome.get("hindsight_labels", 0)),
        "human_seconds": float(outcome["seconds"]) + float(outcome.get("hindsight_seconds", 0.0)),
        "penalties": float(outcome.get("penalty", 0.0)),
    }


def block_rate(totals: Mapping[str, float]) -> float:
    """Blocks per overseen step (0 before the first step)."""
    return float(totals["blocks"]) / totals["steps"] if totals["steps"] else 0.0


@dataclass
class SafetyCounters:
    """Running totals, the open episode of each env, and the finished episodes."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    episodes: list[dict[str, float]] = field(default_factory=list)
    _open: dict[int, dict[str, float]] = field(default_factory=dict)

    def record(self, env_index: int, outcome: Outcome | Mapping[str, Any]) -> None:
        """Count one overseen step of env ``env_index``."""
        fields = outcome if isinstance(outcome, Mapping) else outcome.as_info()
        episode = self._open.setdefault(env_index, dict.fromkeys(COUNTED, 0))
        for key, value in _tally(fields).items():
            self.totals[key] += value
            episode[key] += value

    def end_episode(self, env_index: int, episode_return: float, cut: bool = False) -> dict[str, float]:
        """Close env ``env_index``'s episode; return its row (``game_return``: the return without penalties;
        ``cut``: a stop, not the game, ended it)."""
        row = {"episode": len(self.episodes), "env_index": env_index, **self._open.pop(env_index, dict.fromkeys(COUNTED, 0))}
        row["return"] = float(episode_return)
        row["game_return"] = float(episode_return) - row["penalties"]
        row["cut"] = int(cut)
        self.episodes.append(row)
        return row

    def summary(self) -> dict[str, float]:
        """Cumulative totals plus the block rate and the number of finished episodes."""
        return {**self.totals, "block_rate": block_rate(self.totals), "episodes": len(self.episodes)}
