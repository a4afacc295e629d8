"""The CSV tables a run writes as it goes: ``episodes.csv`` (one row per episode) and ``curve.csv`` (the counted
figures every so many steps)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saferl.oversight.metrics import EPISODE_FIELDS

# ``cut`` comes last: a run folder written before it existed resumes with its rows (:class:`Table`)
EPISODE_COLUMNS = (*(name for name in EPISODE_FIELDS if name != "cut"), "phase", "step", "frames", "cut")
CURVE_COLUMNS = ("step", "frames", "phase", "catastrophes", "catastrophes_on_blocks", "blocks", "false_negatives",
                 "false_positives", "labels", "human_seconds")


class Table:
    """A CSV file appended row by row and flushed, truncated to ``rows`` rows when a run resumes.

    A file written before a column was added (its header the first of ``columns``) keeps its rows, each with 0 in
    the columns it lacks."""

    def __init__(self, path: Path, columns: Sequence[str], rows: int = 0) -> None:
        self.path, self.columns, self.rows = path, tuple(columns), 0
        kept: list[str] = []
        lines = path.read_text().splitlines()[:rows + 1] if rows and path.exists() else []
        if lines:
            header, *kept = lines
            written = tuple(header.split(","))
            missing = len(self.columns) - len(written)
            if missing > 0 and written == self.columns[:-missing]:
                kept = [line + ",0" * missing for line in kept]
        with path.open("w", newline="") as file:
            file.write(",".join(self.columns) + "\n" + "".join(line + "\n" for line in kept))
        self.rows = len(kept)
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row`` (its keys beyond the columns are ignored) and flush it."""
        self._writer.writerow(row)
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        """Close the file."""
        self._file.close()
