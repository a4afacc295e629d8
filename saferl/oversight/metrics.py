"""Safety metrics: catastrophes, blocks, false negatives and positives, human labour.

Counted per episode and cumulatively, from the ``info`` of overseen steps, so the same counters
serve the wrappers, the CLI and the SB3 callback that logs them under ``safety/``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from stable_baselines3.common.callbacks import BaseCallback

if TYPE_CHECKING:
    from saferl.oversight.intervention import Outcome

COUNTED = ("steps", "catastrophes", "catastrophes_on_blocks", "blocks", "false_negatives", "false_positives", "labels",
           "human_seconds", "penalties")
EPISODE_FIELDS = ("episode", "env_index", *COUNTED, "return", "game_return")


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

    def record(self, env_index: int, outcome: "Outcome | Mapping[str, Any]") -> None:
        """Count one overseen step of env ``env_index``."""
        fields = outcome if isinstance(outcome, Mapping) else outcome.as_info()
        episode = self._open.setdefault(env_index, dict.fromkeys(COUNTED, 0))
        for key, value in _tally(fields).items():
            self.totals[key] += value
            episode[key] += value

    def end_episode(self, env_index: int, episode_return: float) -> dict[str, float]:
        """Close env ``env_index``'s episode; return its row (``game_return``: the return without penalties)."""
        row = {"episode": len(self.episodes), "env_index": env_index, **self._open.pop(env_index, dict.fromkeys(COUNTED, 0))}
        row["return"] = float(episode_return)
        row["game_return"] = float(episode_return) - row["penalties"]
        self.episodes.append(row)
        return row

    def summary(self) -> dict[str, float]:
        """Cumulative totals plus the block rate and the number of finished episodes."""
        return {**self.totals, "block_rate": block_rate(self.totals), "episodes": len(self.episodes)}


class SafetyCallback(BaseCallback):
    """Logs the safety counters of overseen envs to TensorBoard (``safety/*``) and per episode to CSV.

    Works with any VecEnv whose step infos carry the oversight keys (``catastrophe``, ``blocked``, ...).

    :param csv_path: where to write one row per finished episode (None: no CSV).
    """

    def __init__(self, csv_path: str | Path | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.counters = SafetyCounters()
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self._returns: dict[int, float] = {}
        self._csv: Any = None
        self._writer: Any = None

    def _on_training_start(self) -> None:
        if self.csv_path is not None:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
            self._csv = self.csv_path.open("a", newline="")
            self._writer = csv.DictWriter(self._csv, fieldnames=EPISODE_FIELDS)
            if new:
                self._writer.writeheader()

    def _on_step(self) -> bool:
        infos, dones, rewards = self.locals["infos"], self.locals["dones"], self.locals["rewards"]
        for index, info in enumerate(infos):
            if "catastrophe" not in info or "blocked" not in info:
                continue
            self.counters.record(index, info)
            self._returns[index] = self._returns.get(index, 0.0) + float(rewards[index])
            if dones[index]:
                row = self.counters.end_episode(index, self._returns.pop(index, 0.0))
                if self._writer is not None:
                    self._writer.writerow(row)
                    self._csv.flush()
        for key, value in self.counters.totals.items():
            self.logger.record(f"safety/{key}", value)
        self.logger.record("safety/block_rate", block_rate(self.counters.totals))
        return True

    def _on_training_end(self) -> None:
        if self._csv is not None:
            self._csv.close()
            self._csv = self._writer = None
