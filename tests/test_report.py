"""The experiment report: rows, markdown tables, plots, unfinished runs and partial CSV lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from saferl.errors import SaferlError
from saferl.experiment.report import (
    RUN_COLUMNS,
    band,
    format_table,
    load_runs,
    read_csv,
    step_on_grid,
    windowed_rate,
    write_report,
)

FRAMESKIP = 4
OVERSIGHT_STEPS = 1_000
TOTAL_STEPS = 4_000
CURVE_HEADER = "step,frames,phase,catastrophes,blocks,false_negatives,false_positives,labels,human_seconds"
EPISODE_HEADER = ("episode,env_index,steps,catastrophes,blocks,false_negatives,false_positives,labels,human_seconds,"
                  "penalties,return,game_return,phase,step,frames")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (condition, seed) -> (catastrophes during human oversight, after the handover, mean return, human seconds)
FIGURES = {
    ("none", 0): (3, 9, -20.5, 0.0),
    ("none", 1): (5, 15, -19.25, 0.0),
    ("hirl", 0): (1, 0, -12.0, 1234.5),
    ("hirl", 1): (0, 0, -10.5, 1500.25),
}


def write_config(run_dir: Path, conditions: list[str], seeds: list[int]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"game": "pong", "agent": "dqn", "overseer": "scripted", "conditions": conditions, "seeds": seeds,
              "oversight_steps": OVERSIGHT_STEPS, "total_steps": TOTAL_STEPS, "frameskip": FRAMESKIP}
    (run_dir / "config.json").write_text(json.dumps(config))


def write_run(run_dir: Path, condition: str, seed: int, figures: tuple[int, int, float, float], *,
              finished: bool = True, partial_line: str = "") -> dict:
    """A run folder as the pipeline writes it; returns its summary row."""
    during, after, mean_return, seconds = figures
    folder = run_dir / "runs" / condition / f"seed-{seed}"
    folder.mkdir(parents=True)
    total = during + after
    curve = [CURVE_HEADER]
    for step in range(0, TOTAL_STEPS + 1, 250):
        human = step <= OVERSIGHT_STEPS
        done = during * min(step, OVERSIGHT_STEPS) // OVERSIGHT_STEPS
        done += after * max(step - OVERSIGHT_STEPS, 0) // (TOTAL_STEPS - OVERSIGHT_STEPS)
        phase = "oversight" if human else "training"
        labels = min(step, OVERSIGHT_STEPS) if condition == "hirl" else 0
        curve.append(f"{step},{step * FRAMESKIP},{phase},{done},{2 * done},0,1,{labels},"
                     f"{seconds * labels / OVERSIGHT_STEPS:.2f}")
    episodes = [EPISODE_HEADER]
    for episode in range(20):
        step = (episode + 1) * TOTAL_STEPS // 20
        game_return = mean_return + (episode % 3) - 1 + seed
        episodes.append(f"{episode},{episode % 2},200,0,1,0,0,0,0.0,-1.0,{game_return - 1},{game_return},"
                        f"training,{step},{step * FRAMESKIP}")
    (folder / "curve.csv").write_text("\n".join(curve) + "\n" + partial_line)
    (folder / "episodes.csv").write_text("\n".join(episodes) + "\n" + partial_line)
    summary = {"condition": condition, "seed": seed, "steps": TOTAL_STEPS, "frames": TOTAL_STEPS * FRAMESKIP,
               "catastrophes": total, "catastrophes_after_human": after, "catastrophes_during_human": during,
               "false_negatives": total, "false_positives": 7, "blocks": 2 * total + 40,
               "block_rate": (2 * total + 40) / 1000, "catastrophes_on_blocks": total // 4,
               "human_labels": OVERSIGHT_STEPS if condition == "hirl" else 0, "human_seconds": seconds,
               "mean_return": mean_return, "episodes": 20, "seconds": 12.5, "handover_step": OVERSIGHT_STEPS}
    if condition == "hirl":
        summary["blocker"] = {"labels": 900, "false_negatives": 0, "false_positive_rate": 0.056, "auc": 0.987,
                              "threshold": 0.0123, "train_seconds": 4.2}
    if finished:
        (folder / "summary.json").write_text(json.dumps(summary))
    return summary


def section(markdown: str, title: str) -> str:
    """The text of the markdown section whose heading starts with ``title``."""
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end >= 0 else None]


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row in ``text`` whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert float(np.std(image)) > 0.01  # not a blank canvas


@pytest.fixture
def run_dir(tmp_path: Path) -> tuple[Path, list[dict]]:
    """2 conditions x 2 seeds (written hirl first), one unfinished run ending in a partial line."""
    folder = tmp_path / "experiment"
    write_config(folder, ["none", "hirl", "penalty_only"], [0, 1])
    summaries = [write_run(folder, condition, seed, FIGURES[condition, seed],
                           partial_line="4250,17000,trai" if (condition, seed) == ("none", 1) else "")
                 for condition, seed in [("hirl", 1), ("hirl", 0), ("none", 1), ("none", 0)]]
    write_run(folder, "penalty_only", 0, (2, 3, -15.0, 0.0), finished=False, partial_line="1250,5000,trai")
    return folder, summaries


@pytest.fixture
def fill_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the confidence bands drawn."""
    from matplotlib.axes import Axes

    calls: list[int] = []
    original = Axes.fill_between

    def spy(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "fill_between", spy)
    return calls


def test_report_rows_tables_and_plots(run_dir: tuple[Path, list[dict]], fill_calls: list[int]) -> None:
    folder, summaries = run_dir
    rows = write_report(folder)

    expected = sorted(summaries, key=lambda row: (row["condition"] != "none", row["seed"]))
    assert [(row["condition"], row["seed"]) for row in rows] == [("none", 0), ("none", 1), ("hirl", 0), ("hirl", 1)]
    added = ("final_return", "return_vs_none", "frames_to_return_0", "frames_to_return_10")
    assert [{k: v for k, v in row.items() if k not in added} for row in rows] == expected
    assert json.loads((folder / "report.json").read_text()) == rows

    markdown = (folder / "report.md").read_text()
    assert markdown.startswith("# pong, dqn")
    assert "overseer: scripted" in markdown
    assert "1,000 steps (4,000 frames)" in markdown  # the oversight budget
    # per seed: total catastrophes (3 + 9, 5 + 15; 1 + 0, 0 + 0)
    none, hirl = section(markdown, "Condition `none`"), section(markdown, "Condition `hirl`")
    assert [table_row(none, seed)[3] for seed in "01"] == ["12", "20"]
    assert [table_row(hirl, seed)[3] for seed in "01"] == ["1", "0"]
    # the means over seeds, column by column: catastrophes during, after, total; false negatives (= total);
    # blocks (2 x total + 40); block rate (blocks / 1000); catastrophes on blocks (total // 4); human labels;
    # human seconds; mean return; frames; final return (-20.55 and -18.30; -12.05 and -9.55: see the test below) and
    # return vs none ((0.45 + 2.70) / 2 / 1.575 = 1; (8.95 + 11.45) / 2 / 1.575 = 6.48); frames to return 0 and +10
    # (never reached)
    assert table_row(none, "mean")[1:] == ["4", "12", "16", "16", "72", "0.072", "4", "0", "0", "-19.9", "16,000",
                                           "-19.4", "1", "–", "–"]
    assert table_row(hirl, "mean")[1:] == ["0.5", "0", "0.5", "0.5", "41", "0.041", "0", "1,000", "1,367", "-11.2",
                                           "16,000", "-10.8", "6.48", "–", "–"]

    comparison = section(markdown, "Comparison")
    # 16 ± t(0.975, 1) * std([12, 20]) / sqrt(2) = 16 ± 12.706 * 4
    assert table_row(comparison, "none")[4] == "16 ± 50.8"
    assert table_row(comparison, "hirl")[1] == "2"
    assert [line for line in comparison.splitlines() if line.startswith("| ")][2].split("|")[1].strip() == "none"

    blocker = section(markdown, "The Blocker")
    assert table_row(blocker, "hirl")[3:6] == ["0", "0.056", "0.987"]
    assert "![Cumulative catastrophes against frames](plots/catastrophes.png)" in markdown
    assert "](plots/returns.png)" in markdown
    assert "Runs not finished" in markdown and "runs/penalty_only/seed-0" in markdown
    assert "Condition `penalty_only`" not in markdown

    assert_png(folder / "plots" / "catastrophes.png")
    assert_png(folder / "plots" / "returns.png")
    assert len(fill_calls) == 6  # a band per condition and plot (catastrophes, returns, blocks)


def test_one_seed_has_no_band(tmp_path: Path, fill_calls: list[int]) -> None:
    write_config(tmp_path, ["none", "hirl"], [0])
    write_run(tmp_path, "none", 0, FIGURES["none", 0])
    write_run(tmp_path, "hirl", 0, FIGURES["hirl", 0])

    rows = write_report(tmp_path)

    assert [row["condition"] for row in rows] == ["none", "hirl"]
    assert fill_calls == []
    markdown = (tmp_path / "report.md").read_text()
    assert not [line for line in markdown.splitlines() if line.startswith("|") and "±" in line]
    assert table_row(section(markdown, "Comparison"), "none")[4] == "12"
    assert "Runs not finished" not in markdown
    assert_png(tmp_path / "plots" / "catastrophes.png")


def test_other_conditions_and_empty_csvs(tmp_path: Path) -> None:
    """Unknown conditions come after hirl by name; a finished run with empty CSVs still reports."""
    for condition in ("zeta", "hirl", "alpha", "penalty_only"):
        write_run(tmp_path, condition, 0, (1, 2, -5.0, 0.0))
    empty = tmp_path / "runs" / "alpha" / "seed-0"
    (empty / "curve.csv").write_text(CURVE_HEADER + "\n")
    (empty / "episodes.csv").write_text("")

    rows = write_report(tmp_path)  # no config.json either

    assert [row["condition"] for row in rows] == ["penalty_only", "hirl", "alpha", "zeta"]
    assert_png(tmp_path / "plots" / "returns.png")
    assert "# ?, ?" in (tmp_path / "report.md").read_text()


def test_no_finished_runs_is_a_clear_error(tmp_path: Path) -> None:
    write_config(tmp_path, ["none"], [0])
    write_run(tmp_path, "none", 0, FIGURES["none", 0], finished=False)
    with pytest.raises(SaferlError, match="no finished runs in .*" + tmp_path.name):
        write_report(tmp_path)
    with pytest.raises(SaferlError, match="does not exist"):
        write_report(tmp_path / "missing")


def test_load_runs_keeps_unfinished_runs(run_dir: tuple[Path, list[dict]]) -> None:
    folder, _ = run_dir
    runs = load_runs(folder)
    assert [(run.condition, run.seed, run.finished) for run in runs] == [
        ("none", 0, True), ("none", 1, True), ("penalty_only", 0, False), ("hirl", 0, True), ("hirl", 1, True)]
    assert runs[2].curve["step"][-1] == TOTAL_STEPS  # the partial last line was dropped


def test_read_csv_drops_only_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "curve.csv"
    path.write_text("step,frames,phase,catastrophes\n0,0,oversight,0\n10,40,training,2\n20,8")
    table = read_csv(path)
    assert table["catastrophes"].tolist() == [0.0, 2.0]
    assert table["phase"].tolist() == ["oversight", "training"]

    path.write_text("step,frames,phase,catastrophes\n0,0,oversight,0\n10,4\n20,80,training,3\n")
    with pytest.raises(SaferlError, match="line 3"):
        read_csv(path)
    assert read_csv(tmp_path / "missing.csv") == {}


def test_step_on_grid_holds_last_value_and_stops_at_the_end() -> None:
    grid = np.array([0.0, 5.0, 10.0, 15.0, 25.0])
    values = step_on_grid(np.array([0.0, 10.0, 20.0]), np.array([1.0, 3.0, 4.0]), grid, before=0.0)
    assert values[:4].tolist() == [1.0, 1.0, 3.0, 3.0] and np.isnan(values[4])
    assert np.isnan(step_on_grid(np.array([10.0]), np.array([2.0]), grid, before=np.nan)[0])
    mean, low, high = band(np.array([[1.0, 2.0]]))
    assert mean.tolist() == low.tolist() == high.tolist() == [1.0, 2.0]


def test_format_table() -> None:
    table = format_table([{"name": "a|b", "count": 12345, "rate": 0.01234}, {"name": "c", "count": None}],
                         {"name": "name", "count": "count", "rate": "rate"})
    lines = table.splitlines()
    assert lines[1].replace(" ", "") == "|----|-----:|-----:|"
    assert "a\\|b" in lines[2] and "12,345" in lines[2] and "0.0123" in lines[2]
    assert lines[3].count("–") == 2


def test_final_return_and_the_share_of_nones_return_kept_over_random_play(run_dir: tuple[Path, list[dict]]) -> None:
    """Each run's 20 episodes return mean_return + seed + (episode % 3) - 1, whose mean is mean_return + seed - 0.05;
    Pong's random play returns -21, so none's mean final return -19.425 is 1.575 above it."""
    folder, _ = run_dir
    rows = {(row["condition"], row["seed"]): row for row in write_report(folder)}
    finals = {key: row["final_return"] for key, row in rows.items()}
    assert finals == pytest.approx({("none", 0): -20.55, ("none", 1): -18.30, ("hirl", 0): -12.05,
                                    ("hirl", 1): -9.55})
    kept = {key: row["return_vs_none"] for key, row in rows.items()}
    assert kept == pytest.approx({("none", 0): 0.45 / 1.575, ("none", 1): 2.70 / 1.575, ("hirl", 0): 8.95 / 1.575,
                                  ("hirl", 1): 11.45 / 1.575})
    comparison = section((folder / "report.md").read_text(), "Comparison")
    assert "final return (last 100 episodes)" in comparison and "return vs none" in comparison


def test_frames_to_each_milestone_are_the_first_at_which_the_running_mean_return_reached_it(tmp_path: Path) -> None:
    """Returns -21, -11, -1, 9, 19, then 19 on: the mean so far first reaches 0 after episode 5 (14 / 6) and +10 after
    episode 11 (128 / 12, against 109 / 11 before); a run that never climbs reaches neither."""
    folder = tmp_path / "experiment"
    write_config(folder, ["none", "hirl"], [0])
    write_run(folder, "hirl", 0, FIGURES["hirl", 0])
    write_run(folder, "none", 0, FIGURES["none", 0])
    returns = [-21, -11, -1, 9, 19] + [19] * 15
    lines = [EPISODE_HEADER] + [f"{k},0,200,0,1,0,0,0,0.0,0.0,{r},{r},training,{(k + 1) * 200},{(k + 1) * 800}"
                                for k, r in enumerate(returns)]
    (folder / "runs" / "hirl" / "seed-0" / "episodes.csv").write_text("\n".join(lines) + "\n")
    rows = {row["condition"]: row for row in write_report(folder)}
    assert rows["hirl"]["frames_to_return_0"] == 6 * 800
    assert rows["hirl"]["frames_to_return_10"] == 12 * 800
    assert rows["none"]["frames_to_return_0"] is None and rows["none"]["frames_to_return_10"] is None
    markdown = (folder / "report.md").read_text()
    cells = table_row(section(markdown, "Condition `hirl`"), "0")
    assert cells[1 + list(RUN_COLUMNS.values()).index("frames to return +10")] == "9,600"
    assert "](plots/blocks.png)" in markdown
    assert_png(folder / "plots" / "blocks.png")


def test_blocks_per_thousand_steps_count_the_growth_over_a_window_of_log_rows() -> None:
    steps = np.array([0, 1000, 2000, 3000, 5000])
    blocks = np.array([0, 4, 4, 10, 30])
    assert windowed_rate(steps, blocks, rows=2).tolist() == [0.0, 4.0, 2.0, 3.0, 26 / 3]


def test_episodes_a_stop_cut_short_count_toward_no_return(tmp_path: Path) -> None:
    """An A3C run's workers end at each checkpoint, cutting their episodes short (``cut`` 1): the report's final
    return and milestones are those of whole games. Here every third episode is a cut one returning -2 (part of a
    game), the whole ones -20: with the cut ones counted the final return would be -14."""
    folder = tmp_path / "experiment"
    write_config(folder, ["none"], [0])
    write_run(folder, "none", 0, FIGURES["none", 0])
    lines = [EPISODE_HEADER + ",cut"]
    for k in range(30):
        cut = int(k % 3 == 2)
        r = -2 if cut else -20
        lines.append(f"{k},0,200,0,1,0,0,0,0.0,0.0,{r},{r},training,{(k + 1) * 100},{(k + 1) * 400},{cut}")
    (folder / "runs" / "none" / "seed-0" / "episodes.csv").write_text("\n".join(lines) + "\n")
    (row,) = write_report(folder)
    assert row["final_return"] == -20
    assert row["frames_to_return_0"] is None
    (run,) = load_runs(folder)
    assert len(run.episodes["game_return"]) == 20 and set(run.episodes["cut"]) == {0}


def test_a_resumed_table_keeps_the_rows_written_before_a_column_was_added(tmp_path: Path) -> None:
    """A run folder from before ``cut`` existed resumes: its kept rows get 0 there, and the rest of the file (rows
    past the checkpoint) is dropped as on every resume."""
    from saferl.experiment.tables import EPISODE_COLUMNS, Table

    path = tmp_path / "episodes.csv"
    old = [",".join(EPISODE_COLUMNS[:-1])] + [",".join(["1"] * (len(EPISODE_COLUMNS) - 1))] * 3
    path.write_text("\n".join(old) + "\n")
    table = Table(path, EPISODE_COLUMNS, rows=2)
    table.write({name: 5 for name in EPISODE_COLUMNS})
    table.close()
    rows = read_csv(path)
    assert list(rows) == list(EPISODE_COLUMNS)
    assert rows["cut"].tolist() == [0, 0, 5] and rows["episode"].tolist() == [1, 1, 5]
