"""Human labour: each run's share of watching every frame, extrapolated to 100M frames in the report."""

import pytest

from saferl.experiment.labour import ASSUMED_SECONDS, human_labour
from saferl.experiment.report import write_report
from test_report import FIGURES, section, table_row, write_config, write_run


def test_a_run_that_asks_for_one_frame_in_ten_costs_a_tenth_of_watching_every_frame():
    watched = {"condition": "hirl", "handover_step": 10_000, "steps": 40_000, "human_labels": 10_000,
               "human_seconds": 5_000.0}
    asked = {**watched, "human_labels": 1_000, "human_seconds": 500.0}
    every, tenth = human_labour(watched, 4), human_labour(asked, 4)
    assert every["share_of_every_frame"] == 1.0 and every["duty_frames"] == 40_000
    hours = 100_000_000 / 4 * 0.5 / 3600  # 25M decisions at 0.5 s each
    assert every["hours_at_100m_frames"] == pytest.approx(hours) == every["watch_every_frame_hours_at_100m_frames"]
    assert tenth["hours_at_100m_frames"] == pytest.approx(hours / 10)
    shaped = human_labour({"condition": "penalty_only", "steps": 40_000, "human_labels": 40_000}, 4)
    assert shaped["duty_frames"] == 160_000 and shaped["share_of_every_frame"] == 1.0, "on duty all run long"
    assert shaped["seconds_per_decision"] == ASSUMED_SECONDS and not shaped["seconds_measured"]
    assert human_labour({"condition": "none", "steps": 40_000}, 4)["hours_at_100m_frames"] == 0.0


def test_the_report_has_a_human_labour_table(tmp_path):
    write_config(tmp_path, ["none", "hirl"], [0, 1])
    for (condition, seed), figures in FIGURES.items():
        write_run(tmp_path, condition, seed, figures)
    write_report(tmp_path)
    labour = section((tmp_path / "report.md").read_text(), "Human labour")
    hirl = table_row(labour, "hirl")
    assert hirl[1] == "1,000" and hirl[2] == "4,000" and hirl[3] == "1"
    seconds = (1234.5 + 1500.25) / 2 / 1000  # measured seconds a decision, mean over the seeds
    assert float(hirl[6].replace(",", "")) == pytest.approx(25_000_000 * seconds / 3600, rel=1e-3)
    assert table_row(labour, "none")[6] == "0"
