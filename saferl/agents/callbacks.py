"""An SB3 callback that logs the safety counters of overseen envs, for training loops of your own."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from saferl.oversight.metrics import EPISODE_FIELDS, SafetyCounters, block_rate


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
