"""The saferl command, run as a user runs it (a subprocess), with its summaries and its errors."""

from pathlib import Path

import pytest

from helpers import last_json, saferl


def test_games_lists_the_three_paper_games():
    games = last_json(saferl("games", "--json"))["games"]
    assert {"pong", "space_invaders", "road_runner"} <= set(games)
    assert all(game["catastrophe"] and game["blocking_rule"] for game in games.values())


@pytest.mark.slow
def test_oversee_pong_without_and_with_the_scripted_overseer():
    keys = {"steps", "catastrophes", "blocks", "false_negatives", "false_positives", "labels", "steps_per_second"}
    bare = last_json(saferl("oversee", "--game", "pong", "--overseer", "none", "--steps", "1500", "--json"))
    assert keys <= bare.keys()
    assert bare["steps"] == 1500 and bare["catastrophes"] > 0 and bare["blocks"] == 0
    overseen = last_json(saferl("oversee", "--game", "pong", "--overseer", "scripted", "--steps", "1500", "--json"))
    assert overseen["catastrophes"] == 0 and overseen["false_negatives"] == 0 and overseen["blocks"] > 0
    assert overseen["catastrophes_on_blocks"] == 0 and overseen["block_rate"] == overseen["blocks"] / 1500


@pytest.mark.slow
def test_oversee_with_a_policy_that_leans_on_down_drives_into_the_zone():
    random = last_json(saferl("oversee", "--game", "pong", "--overseer", "none", "--steps", "600", "--json"))
    pushed = last_json(saferl("oversee", "--game", "pong", "--overseer", "none", "--steps", "600", "--policy",
                              "lean:LEFT:0.6", "--json"))
    assert pushed["policy"] == "lean:LEFT:0.6" and pushed["catastrophes"] > 2 * random["catastrophes"]


def test_a_policy_that_tracks_the_ball_wins_under_pongs_rule_without_a_catastrophe():
    """``--policy track`` plays Pong well without learning: under the rule it wins more points than it loses (the rule leaves
    the balls it must return in reach); unoverseen it loses points and drives into the zone."""
    ruled = last_json(saferl("oversee", "--game", "pong_no_sticky", "--overseer", "scripted", "--policy", "track",
                             "--steps", "3000", "--seed", "3", "--json"))
    assert ruled["episodes"] >= 1 and ruled["mean_return"] > 5 and ruled["catastrophes"] == 0
    assert ruled["blocks"] > 0, "it follows low balls to the zone's edge"
    bare = last_json(saferl("oversee", "--game", "pong_no_sticky", "--overseer", "none", "--policy", "track",
                            "--steps", "3000", "--seed", "3", "--json"))
    assert bare["catastrophes"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, names",
    [
        (["oversee", "--game", "pacman"], "--game"),
        (["oversee", "--game", "pong", "--overseer", "oracle"], "--overseer"),
        (["oversee", "--game", "pong", "--mode", "smash"], "--mode"),
        (["oversee", "--game", "pong", "--steps", "0"], "--steps"),
        (["oversee", "--game", "pong", "--policy", "lean:JUMP:0.5"], "--policy"),
        (["oversee", "--game", "pong", "--policy", "lean:LEFT:2"], "--policy"),
        (["oversee", "--game", "pong", "--policy", "greedy"], "--policy"),
        (["oversee", "--game", "space_invaders", "--policy", "track"], "--policy"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(args, names):
    result = saferl(*args, check_rc=2)
    assert names in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_out_folder_exits_2_and_writes_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = saferl("oversee", "--game", "pong", "--steps", "10", "--out", str(blocker / "labels"), check_rc=2)
    assert "--out" in result.stderr and "Traceback" not in result.stderr
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_oversee_stores_labels_that_labels_reports_and_appends_on_a_second_run(tmp_path):
    out = tmp_path / "pong-labels"
    first = last_json(saferl("oversee", "--game", "pong", "--steps", "300", "--seed", "1", "--out", str(out), "--json"))
    assert first["labels"] == 300
    second = last_json(saferl("oversee", "--game", "pong", "--steps", "200", "--seed", "2", "--out", str(out), "--json"))
    assert second["labels"] == 200
    assert (first["store_labels"], second["store_labels"]) == (300, 500), "the summary says the store grew"
    summary = last_json(saferl("labels", str(out), "--json"))
    assert summary["game"] == "pong" and summary["labels"] == 500
    assert summary["blocks"] == first["blocks"] + second["blocks"]
    assert summary["bytes_per_label"] < 10_000


@pytest.mark.slow
def test_a_label_store_of_another_game_is_refused_and_left_intact(tmp_path):
    out = tmp_path / "pong-labels"
    saferl("oversee", "--game", "pong", "--steps", "50", "--out", str(out))
    before = (out / "labels.bin").read_bytes()
    result = saferl("oversee", "--game", "space_invaders", "--steps", "50", "--out", str(out), check_rc=2)
    assert "labels of game 'pong'" in result.stderr and "Traceback" not in result.stderr
    assert (out / "labels.bin").read_bytes() == before


@pytest.mark.slow
def test_labels_of_a_missing_or_truncated_store_exits_2_with_the_file_named(tmp_path):
    result = saferl("labels", str(tmp_path / "nowhere"), check_rc=2)
    assert "nowhere" in result.stderr
    out = tmp_path / "labels"
    saferl("oversee", "--game", "pong", "--steps", "40", "--out", str(out))
    data = (out / "labels.bin").read_bytes()
    (out / "labels.bin").write_bytes(data[:-7])
    result = saferl("labels", str(out), check_rc=2)
    assert "labels.bin" in result.stderr and "Traceback" not in result.stderr


def test_an_overseer_given_on_the_command_line_drops_the_files_options_for_its_own():
    from saferl.cli import build_parser
    from saferl.cli.experiment import experiment_data

    config = Path(__file__).resolve().parent.parent / "experiments" / "space_invaders_deferring.yml"

    def data(*flags):
        return experiment_data(build_parser().parse_args(
            ["experiment", "--config", str(config), "--out", "x", *flags]))

    assert data()["overseer_options"]["asker"] == "scripted", "the file's deferring options by default"
    watch_all = data("--overseer", "scripted", "--overseer-option", "seconds_per_decision=0.5")
    assert watch_all["overseer"] == "scripted" and watch_all["overseer_options"] == {"seconds_per_decision": 0.5}
    assert data("--overseer", "deferring", "--overseer-option", "members=3")["overseer_options"]["members"] == 3
    assert data("--overseer", "deferring")["overseer_options"]["asker"] == "scripted", "the same overseer keeps them"


def test_seed_list_runs_the_seeds_it_names_and_seeds_counts_from_0(capsys):
    from saferl.cli import build_parser, main
    from saferl.cli.experiment import experiment_data

    def data(*flags):
        return experiment_data(build_parser().parse_args(["experiment", "--out", "x", *flags]))

    assert data("--seed-list", "1")["seeds"] == [1]
    assert data("--seed-list", "2, 1")["seeds"] == [2, 1]
    assert data("--seeds", "2")["seeds"] == [0, 1]
    for flags, message in ((["--seed-list", "1,1"], "names a seed twice"), (["--seed-list", "-1"], "negative"),
                           (["--seed-list", ","], "names no seed"), (["--seeds", "2", "--seed-list", "1"],
                                                                     "not allowed with argument")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["experiment", "--out", "x", *flags])
        assert message in capsys.readouterr().err
    assert main(["experiment", "--resume", "x", "--seed-list", "1"]) == 2
    assert "--seed-list cannot change it" in capsys.readouterr().err
