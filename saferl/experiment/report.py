"""The experiment report: tables and plots of a run folder written by ``saferl experiment``.

Reads ``RUN_DIR/config.json`` and ``RUN_DIR/runs/<condition>/seed-<k>/{summary.json,curve.csv,episodes.csv}``
and writes ``report.json``, ``report.md`` and ``plots/{catastrophes,returns,blocks}.png`` beside them. A run without a
readable ``summary.json`` did not finish: it is left out and named in the report. CSV files written by a crash
may end in a partial line, which is dropped.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saferl.errors import SaferlError

CONDITION_ORDER = ("none", "penalty_only", "hirl")
TEXT_COLUMNS = ("phase",)
GRID_POINTS = 512
SMOOTH_EPISODES = 10
NUMBER_CELL = re.compile(r"^(–|[-+]?[\d,.]+( ± [\d,.]+)?)$")

# Student t quantiles t(0.975, df) for df = 1..30; beyond that the normal 1.96 is close enough (< 2%).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)

# The figures of each run in the tables: summary.json key -> column title.
RUN_COLUMNS = {
    "catastrophes_during_human": "catastrophes (human)",
    "catastrophes_after_human": "catastrophes (after handover)",
    "catastrophes": "catastrophes (total)",
    "false_negatives": "false negatives",
    "blocks": "blocks",
    "block_rate": "block rate",
    "catastrophes_on_blocks": "catastrophes on blocks",
    "human_labels": "human labels",
    "human_seconds": "human seconds",
    "mean_return": "mean return",
    "frames": "frames",
    "final_return": "final return (last 100 episodes)",
    "return_vs_none": "return vs none",
    "frames_to_return_0": "frames to return 0",
    "frames_to_return_10": "frames to return +10",
}
FINAL_EPISODES = 100  # the final return is the mean game return of this many last episodes
MILESTONES = (0, 10)  # the report gives the first frame at which the final-return mean reached each
BLOCK_RATE_ROWS = 20  # blocks per 1,000 steps are counted over this many rows of curve.csv
BLOCKER_COLUMNS = {
    "labels": "labels",
    "false_negatives": "false negatives",
    "false_positive_rate": "false-positive rate",
    "auc": "AUC",
    "threshold": "threshold",
    "promised_fn_rate": "promised FN rate (95%)",
    "val_block_share": "blocks (out of fold)",
    "teacher_block_share": "teacher's blocks",
    "train_seconds": "train seconds",
    "alarm": "alarm",
}


@dataclass
class Run:
    """One (condition, seed) folder: its summary (``None`` when it did not finish) and its CSV columns (``episodes``:
    the episodes the game ended, :func:`whole_episodes`)."""

    condition: str
    seed: int | str
    path: Path
    summary: dict[str, Any] | None
    curve: dict[str, np.ndarray] = field(default_factory=dict)
    episodes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.summary is not None


def condition_key(condition: str) -> tuple[int, str]:
    """Sort key: none, penalty_only, hirl, then any other condition by name."""
    rank = CONDITION_ORDER.index(condition) if condition in CONDITION_ORDER else len(CONDITION_ORDER)
    return rank, condition


def _seed_key(seed: int | str) -> tuple[int, int, str]:
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """The columns of a CSV file as arrays (numbers as floats); ``{}`` for a missing or empty file.

    A last line that does not parse (a crash mid-write) is dropped; a bad line elsewhere is an error.
    """
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        lines = [row for row in csv.reader(handle) if row]
    if not lines:
        return {}
    header, body = lines[0], lines[1:]
    rows: list[list[Any]] = []
    for number, line in enumerate(body, start=2):
        try:
            if len(line) != len(header):
                raise ValueError(f"{len(line)} fields, expected {len(header)}")
            rows.append([value if name in TEXT_COLUMNS else float(value) for name, value in zip(header, line)])
        except ValueError as err:
            if number == len(body) + 1:
                break  # the partial last line of an interrupted run
            raise SaferlError(f"cannot read {path}, line {number}: {err}") from None
    return {name: np.array([row[i] for row in rows], dtype=object if name in TEXT_COLUMNS else float)
            for i, name in enumerate(header)}


def whole_episodes(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows of an ``episodes.csv`` (as :func:`read_csv` gives them) that the game ended: those a stop cut short
    (``cut`` 1, an A3C run's checkpoints and handover) are dropped, since their returns are of part of a game."""
    cut = rows.get("cut")
    if cut is None or not cut.any():
        return rows
    return {name: column[cut == 0] for name, column in rows.items()}


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or half-written: the run did not finish
    return summary if isinstance(summary, dict) else None


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/config.json``, or ``{}`` when there is none."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except ValueError as err:
        raise SaferlError(f"cannot read {path}: {err}") from None
    return config if isinstance(config, dict) else {}


def load_runs(run_dir: str | Path) -> list[Run]:
    """Every ``runs/<condition>/seed-<k>`` folder of ``run_dir``, finished or not, in report order."""
    runs = []
    for folder in sorted(Path(run_dir).glob("runs/*/seed-*")):
        if not folder.is_dir():
            continue
        name = folder.name.removeprefix("seed-")
        summary = _read_summary(folder / "summary.json")
        condition = str(summary.get("condition", folder.parent.name)) if summary else folder.parent.name
        seed = summary.get("seed", name) if summary else name
        if isinstance(seed, str) and seed.lstrip("-").isdigit():
            seed = int(seed)
        runs.append(Run(condition, seed, folder, summary,
                        read_csv(folder / "curve.csv"), whole_episodes(read_csv(folder / "episodes.csv"))))
    return sorted(runs, key=lambda run: (condition_key(run.condition), _seed_key(run.seed)))


# ---------------------------------------------------------------- numbers


def t_quantile(df: int) -> float:
    """The two-sided 95% Student t quantile for ``df`` degrees of freedom."""
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width (Student t) of ``values``; NaN half-width below two values."""
    data = np.array([v for v in values if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)],
                    dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return math.nan, math.nan
    if data.size == 1:
        return float(data[0]), math.nan
    return float(data.mean()), t_quantile(data.size - 1) * float(data.std(ddof=1)) / math.sqrt(data.size)


def format_number(value: Any) -> str:
    """A number for people: thousands separators, two or three significant decimals; "–" when missing."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return "–" if value is None else str(value)
    value = float(value)
    if not math.isfinite(value):
        return "–"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_mean_ci(values: Sequence[float]) -> str:
    """``mean ± half-width`` of ``values`` (just the mean with a single value)."""
    mean, half = mean_ci(values)
    return format_number(mean) if math.isnan(half) else f"{format_number(mean)} ± {format_number(half)}"


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | Mapping[str, str]) -> str:
    """A markdown table of ``rows``: ``columns`` lists the keys, or maps each key to its title.

    Numbers go through :func:`format_number`; missing values show "–". Columns of numbers (or "mean ± half-width")
    are right-aligned.
    """
    titles = dict(columns) if isinstance(columns, Mapping) else {key: key for key in columns}
    cells = [[format_number(row.get(key)).replace("|", "\\|") for key in titles] for row in rows]
    numeric = [all(NUMBER_CELL.match(line[i]) for line in cells) for i in range(len(titles))]
    widths = [max([len(title), 3, *(len(line[i]) for line in cells)]) for i, title in enumerate(titles.values())]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if right else v.ljust(w)
                                 for v, w, right in zip(values, widths, numeric)) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if right else "-" * w for w, right in zip(widths, numeric)) + " |"
    return "\n".join([line(list(titles.values())), rule, *(line(values) for values in cells)])


# ---------------------------------------------------------------- plots


def _frameskip(config: Mapping[str, Any], runs: Sequence[Run]) -> float:
    if config.get("frameskip"):
        return float(config["frameskip"])
    for run in runs:
        if run.summary and run.summary.get("steps") and run.summary.get("frames"):
            return float(run.summary["frames"]) / float(run.summary["steps"])
    return 1.0


def handover_frames(config: Mapping[str, Any], runs: Sequence[Run]) -> list[float]:
    """The distinct frames where the Blocker took over: from hirl's ``handover_step``, else any run's, else config."""
    skip = _frameskip(config, runs)
    for wanted in (lambda run: run.condition == "hirl", lambda run: True):
        steps = {float(run.summary["handover_step"]) for run in runs
                 if run.summary and wanted(run) and run.summary.get("handover_step") is not None}
        if steps:
            return sorted(step * skip for step in steps)
    return [float(config["oversight_steps"]) * skip] if config.get("oversight_steps") else []


def step_on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray, before: float) -> np.ndarray:
    """``y`` held at its last known value on ``grid``: ``before`` ahead of the first ``x``, NaN past the last."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    index = np.searchsorted(x, grid, side="right") - 1
    values = np.where(index >= 0, y[np.clip(index, 0, None)], before)
    return np.where(grid > x[-1], np.nan, values)


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and up to ``window - 1`` before it."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, lower and upper 95% bounds over seeds (rows) of ``curves``, NaN where any seed has no value."""
    mean = curves.mean(axis=0)
    n = curves.shape[0]
    if n < 2:
        return mean, mean, mean
    half = t_quantile(n - 1) * curves.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def windowed_rate(steps: np.ndarray, counts: np.ndarray, rows: int) -> np.ndarray:
    """Per 1,000 steps, the growth of the cumulative ``counts`` over the last ``rows`` rows (fewer at the start)."""
    back = np.maximum(np.arange(len(steps)) - rows, 0)
    span = steps - steps[back]
    return np.where(span > 0, 1000.0 * (counts - counts[back]) / np.maximum(span, 1), 0.0)


def _series(runs: Sequence[Run], what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frames, values) of each run that has data: cumulative catastrophes, blocks per 1,000 steps or smoothed
    game returns."""
    series = []
    for run in runs:
        if what == "returns":
            table, columns, name = run.episodes, ["game_return" if "game_return" in run.episodes else "return"], "episodes"
        else:
            table, columns, name = run.curve, ["step", "blocks"] if what == "blocks" else ["catastrophes"], "curve"
        if not table or table.get("frames", np.empty(0)).size == 0:
            continue
        for column in ("frames", *columns):
            if column not in table:
                raise SaferlError(f"{run.path} has no column {column!r} in its {name}.csv")
        if what == "blocks":
            values = windowed_rate(table["step"], table["blocks"], BLOCK_RATE_ROWS)
        elif what == "catastrophes":
            values = table["catastrophes"]
        else:
            values = trailing_mean(table[columns[0]], SMOOTH_EPISODES)
        series.append((table["frames"], values))
    return series


def plot_metric(runs: Sequence[Run], config: Mapping[str, Any], what: str, path: Path) -> None:
    """Plot ``what`` ("catastrophes", "blocks" or "returns") against frames, one line per condition, into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    conditions = sorted({run.condition for run in runs}, key=condition_key)
    data = {c: _series([run for run in runs if run.condition == c], what) for c in conditions}
    ends = [x.max() for series in data.values() for x, _ in series]
    grid = np.linspace(0.0, max(ends) if ends else 1.0, GRID_POINTS)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    before = 0.0 if what == "catastrophes" else math.nan
    game, agent = config.get("game", "?"), config.get("agent", "?")

    fig, ax = plt.subplots(figsize=(8, 5))
    finals = []
    for i, condition in enumerate(conditions):
        if not data[condition]:
            continue
        curves = np.vstack([step_on_grid(x, y, grid, before) for x, y in data[condition]])
        drawn = np.isfinite(curves).all(axis=0)  # drawn where every seed has a value
        if not drawn.any():
            continue
        mean, low, high = band(curves[:, drawn])
        if what == "catastrophes":
            low = np.maximum(low, 0.0)  # a count is never negative, whatever the t band says
        color = colors[i % len(colors)]
        n = curves.shape[0]
        ax.plot(grid[drawn], mean, color=color, label=f"{condition} ({n} seed{'s' if n > 1 else ''})")
        if n > 1:
            ax.fill_between(grid[drawn], low, high, color=color, alpha=0.2, linewidth=0)
        finals.append(float(np.nanmax(high)))
    label = "Blocker takes over" if "hirl" in conditions else "end of human oversight"
    for j, frames in enumerate(handover_frames(config, runs)):
        ax.axvline(frames, color="black", linestyle="--", linewidth=1, label=label if j == 0 else None)
    if what == "catastrophes":
        if finals and max(finals) > 100 and max(finals) > 100 * (min(finals) + 1):
            ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{game}, {agent}: cumulative catastrophes")
        ax.set_ylabel("cumulative catastrophes (mean over seeds, 95% CI)")
    elif what == "blocks":
        ax.set_ylim(bottom=0)
        ax.set_title(f"{game}, {agent}: blocks per 1,000 steps")
        ax.set_ylabel(f"blocks per 1,000 steps, over {BLOCK_RATE_ROWS} log rows (mean over seeds)")
    else:
        ax.set_title(f"{game}, {agent}: game return (mean of last {SMOOTH_EPISODES} episodes)")
        ax.set_ylabel("game return (mean over seeds, 95% CI)")
    if not finals:
        ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("frames")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- the report


def _header(config: Mapping[str, Any], run_dir: Path, runs: Sequence[Run]) -> list[str]:
    skip = _frameskip(config, runs)
    game, agent = config.get("game", "?"), config.get("agent", "?")

    def budget(key: str) -> str:
        steps = config.get(key)
        return "–" if steps is None else f"{format_number(steps)} steps ({format_number(steps * skip)} frames)"

    return [
        f"# {game}, {agent}: experiment report",
        "",
        f"Run folder: `{run_dir}`",
        "",
        f"- game: {game}",
        f"- agent: {agent}",
        f"- overseer: {config.get('overseer', '?')}",
        f"- conditions: {', '.join(map(str, config.get('conditions', []))) or '?'}",
        f"- seeds: {', '.join(map(str, config.get('seeds', []))) or '?'}",
        f"- human oversight budget: {budget('oversight_steps')}",
        f"- total training: {budget('total_steps')}",
        f"- frameskip: {format_number(skip)}",
    ]


def _markdown(config: Mapping[str, Any], run_dir: Path, finished: Sequence[Run], unfinished: Sequence[Run]) -> str:
    conditions = sorted({run.condition for run in finished}, key=condition_key)
    parts = ["\n".join(_header(config, run_dir, finished))]
    comparison = []
    for condition in conditions:
        rows = [{"seed": run.seed, **run.summary} for run in finished if run.condition == condition]
        mean_row = {"seed": "mean", **{key: mean_ci([row.get(key) for row in rows])[0] for key in RUN_COLUMNS}}
        table = format_table([*rows, mean_row], {"seed": "seed", **RUN_COLUMNS})
        parts.append(f"## Condition `{condition}` ({len(rows)} seed{'s' if len(rows) > 1 else ''})\n\n{table}")
        comparison.append({"condition": condition, "seeds": len(rows),
                           **{key: format_mean_ci([row.get(key) for row in rows]) for key in RUN_COLUMNS}})
    parts.append("## Comparison\n\nMeans over seeds, ± the 95% confidence half-width (Student t) "
                 "when there is more than one seed.\n\n"
                 + format_table(comparison, {"condition": "condition", "seeds": "seeds", **RUN_COLUMNS}))
    blockers = [{"condition": run.condition, "seed": run.seed, **run.summary["blocker"]}
                for run in finished if isinstance(run.summary.get("blocker"), dict)]
    if blockers:
        parts.append("## The Blocker (held-out figures)\n\n"
                     + format_table(blockers, {"condition": "condition", "seed": "seed", **BLOCKER_COLUMNS}))
    parts.append(_labour_section(config, finished))
    asking = [{"condition": run.condition, "seed": run.seed, **run.summary["human_phase_overseer"]}
              for run in finished if isinstance(run.summary.get("human_phase_overseer"), dict)]
    if asking:
        columns = {"condition": "condition", "seed": "seed",
                   **{key: key.replace("_", " ") for key in asking[0] if key not in ("condition", "seed")}}
        parts.append("## The overseer on duty\n\nWhat the human phase's overseer reported of its work at the "
                     "handover (the deferring overseer: decisions asked and why, decided itself, ensembles "
                     "trained; one decision can be asked for several reasons).\n\n" + format_table(asking, columns))
    parts.append("## Plots\n\n![Cumulative catastrophes against frames](plots/catastrophes.png)\n\n"
                 "![Game return against frames](plots/returns.png)\n\n"
                 "![Blocks per 1,000 steps against frames](plots/blocks.png)")
    if unfinished:
        names = ", ".join(f"`{run.path.relative_to(run_dir)}`" for run in unfinished)
        parts.append(f"Runs not finished (left out): {names}.")
    return "\n\n".join(parts) + "\n"


def _labour_section(config: Mapping[str, Any], finished: Sequence[Run]) -> str:
    """The human labour of each condition (means over seeds), extrapolated to 100M frames (:mod:`saferl.experiment.labour`)."""
    from saferl.experiment.labour import ASSUMED_SECONDS, COLUMNS, human_labour

    skip = _frameskip(config, finished)
    rows = []
    for condition in sorted({run.condition for run in finished}, key=condition_key):
        runs = [human_labour(run.summary, skip) for run in finished if run.condition == condition]
        rows.append({"condition": condition, **{key: mean_ci([r[key] for r in runs])[0] for key in list(COLUMNS)[1:]}})
    return ("## Human labour\n\nFrames a person looked at (one per label) while on duty, and what that rate comes "
            "to over 100M frames against watching every frame of them (the paper's oversight phase). Seconds a "
            f"decision are the run's own where it recorded any, else {ASSUMED_SECONDS} s (the paper's window "
            "pace); means over seeds.\n\n" + format_table(rows, COLUMNS))


def add_final_returns(finished: Sequence[Run], config: Mapping[str, Any]) -> None:
    """Add to each run's summary ``final_return`` (the mean game return of its last :data:`FINAL_EPISODES`
    episodes), ``frames_to_return_<level>`` (the frames at the end of the first episode at which that mean, over the
    episodes so far, reached each of :data:`MILESTONES`; None if it never did) and ``return_vs_none``: how much of
    ``none``'s final return over random play's the run kept, ``(final - random) / (none's mean final - random)``,
    with the game's ``random_return`` (None where the game states none or there is no ``none`` run)."""
    from saferl.games import GAMES

    for run in finished:
        returns = run.episodes.get("game_return", np.empty(0))
        run.summary["final_return"] = float(np.mean(returns[-FINAL_EPISODES:])) if len(returns) else None
        running = trailing_mean(returns, FINAL_EPISODES) if len(returns) else returns
        frames = run.episodes.get("frames")
        for level in MILESTONES:
            reached = np.flatnonzero(running >= level)
            run.summary[f"frames_to_return_{level}"] = (float(frames[reached[0]]) if len(reached) and frames is not None
                                                        else None)
    game = GAMES.get(str(config.get("game")))
    baseline = game.random_return if game is not None else None
    none = [run.summary["final_return"] for run in finished
            if run.condition == "none" and run.summary["final_return"] is not None]
    scale = float(np.mean(none)) - baseline if none and baseline is not None else 0.0
    for run in finished:
        final = run.summary["final_return"]
        run.summary["return_vs_none"] = (final - baseline) / scale if final is not None and scale else None


def write_report(run_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``report.json``, ``report.md`` and ``plots/*.png`` into ``run_dir``; return the report rows."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SaferlError(f"run folder {run_dir} does not exist; pass the --out folder of `saferl experiment`")
    config = load_config(run_dir)
    runs = load_runs(run_dir)
    finished = [run for run in runs if run.finished]
    unfinished = [run for run in runs if not run.finished]
    if not finished:
        raise SaferlError(f"no finished runs in {run_dir}: expected runs/<condition>/seed-<k>/summary.json "
                          f"({len(unfinished)} unfinished run folder(s) found)")
    add_final_returns(finished, config)
    rows = [run.summary for run in finished]
    (run_dir / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_metric(finished, config, "catastrophes", run_dir / "plots" / "catastrophes.png")
    plot_metric(finished, config, "returns", run_dir / "plots" / "returns.png")
    plot_metric(finished, config, "blocks", run_dir / "plots" / "blocks.png")
    (run_dir / "report.md").write_text(_markdown(config, run_dir, finished, unfinished))
    return rows
