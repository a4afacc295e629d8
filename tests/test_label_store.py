"""The label store: round trip, kill -9, damaged files and their check and salvage from the command line, headers
checked before use, relabels, and bytes per label on real Pong frames."""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saferl.cli import main
from saferl.labels.format import FILE_NAME, Label
from saferl.labels.format import LabelRecord as _LabelRecord
from saferl.labels.store import LabelStore, LabelStoreError

PONG_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pong_frames() -> list[np.ndarray]:
    """Real Pong frames (210x160x3) from random play."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5")
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(240):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(obs.copy())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return frames[::2]


def make_label(frame: np.ndarray, i: int) -> Label:
    """A label whose every field depends on ``i``."""
    return Label(frame=frame, proposed_action=i % 6, executed_action=(i * 5) % 6, blocked=i % 3 == 0,
                 catastrophe=i % 7 == 0, episode=i // 50, step=i % 50, overseer=("human", "scripted")[i % 2],
                 seconds=i * 0.25, score=math.nan if i % 4 == 0 else i / 10)


def synthetic_label(i: int) -> Label:
    """A label with a random (hard to compress) 210x160 frame, reproducible from ``i``."""
    frame = np.random.default_rng(i).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    return make_label(frame, i)


def assert_same(got: Label, want: Label) -> None:
    assert got.frame.dtype == np.uint8 and np.array_equal(got.frame, want.frame)
    for name in ("proposed_action", "executed_action", "blocked", "catastrophe", "episode", "step",
                 "overseer", "seconds"):
        assert getattr(got, name) == getattr(want, name), name
    assert got.score == want.score or (math.isnan(got.score) and math.isnan(want.score))


def fill(path: Path, frames: list[np.ndarray]) -> list[int]:
    """A new Pong store at ``path`` with one label per frame; the file size after each append."""
    sizes = []
    with LabelStore.create(path, "pong", PONG_ACTIONS) as store:
        sizes.append(store.file.stat().st_size)
        for i, frame in enumerate(frames):
            assert store.append(make_label(frame, i)) == i
            sizes.append(store.file.stat().st_size)
    return sizes


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``saferl ARGS`` run in this process: (exit code, stdout, stderr)."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, kind: str = "error") -> str:
    """The single ``saferl: KIND: ...`` line that ``err`` must be."""
    assert len(err.splitlines()) == 1 and err.startswith(f"saferl: {kind}: "), err
    assert "Traceback" not in err and "UserWarning" not in err and ".py:" not in err, err
    return err


def report(out: str) -> dict:
    """The JSON object on the last line of a command's output."""
    return json.loads(out.splitlines()[-1])


def test_round_trip_all_fields(tmp_path: Path, pong_frames: list[np.ndarray]) -> None:
    frames = pong_frames[:40]
    fill(tmp_path / "run", frames)
    want = [make_label(frame, i) for i, frame in enumerate(frames)]
    with LabelStore.open(tmp_path / "run", "pong") as store:
        assert len(store) == 40 and store.action_names == PONG_ACTIONS and store.frame_shape == (210, 160, 3)
        for got, expected in zip(store, want, strict=True):
            assert_same(got, expected)
        assert_same(store[-1], want[-1])
        assert np.array_equal(store.frames([3, 0, 39]), np.stack([frames[3], frames[0], frames[39]]))
        a = store.arrays()
        assert a["proposed_action"].tolist() == [w.proposed_action for w in want]
        assert a["blocked"].tolist() == [w.blocked for w in want]
        assert a["overseer"].tolist() == [w.overseer for w in want]
        assert np.array_equal(a["score"], [w.score for w in want], equal_nan=True)
        summary = store.summary()
        digest = store.digest()
    assert summary["labels"] == 40 and summary["blocks"] == 14 and summary["catastrophes"] == 6
    assert summary["episodes"] == 1 and summary["overseers"] == {"human": 20, "scripted": 20}
    assert summary["human_seconds"] == sum(w.seconds for w in want) and summary["format_version"] == 1
    with LabelStore.open_or_create(tmp_path / "run", "pong", PONG_ACTIONS) as store:
        assert store.digest() == digest
        assert store.append(make_label(frames[0], 40)) == 40
        assert store.digest() != digest


def test_bytes_per_label_on_real_pong_frames(tmp_path: Path, pong_frames: list[np.ndarray]) -> None:
    fill(tmp_path, pong_frames)
    with LabelStore.open(tmp_path) as store:
        summary = store.summary()
    assert summary["labels"] == len(pong_frames) == 120
    assert summary["bytes_per_label"] < 10_000, summary


def test_kill_9_keeps_every_acknowledged_label(tmp_path: Path) -> None:
    child = ("import sys\n"
             "from saferl.labels.store import LabelStore\n"
             "from test_label_store import PONG_ACTIONS, synthetic_label\n"
             "store = LabelStore.open_or_create(sys.argv[1], 'pong', PONG_ACTIONS)\n"
             "for i in range(100_000):\n"
             "    print(store.append(synthetic_label(i)), flush=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    guard = threading.Timer(60, proc.kill)
    guard.start()
    acked = []
    try:
        while len(acked) < 30:
            line = proc.stdout.readline()
            assert line, f"the writer died: {proc.stderr.read()}"
            acked.append(int(line))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        acked += [int(line) for line in proc.stdout.read().splitlines(keepends=True) if line.endswith("\n")]
    finally:
        guard.cancel()
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert acked == list(range(len(acked)))
    with LabelStore.open_or_create(tmp_path, "pong", PONG_ACTIONS) as store:  # the writer may have died mid-record
        n = len(store)
        assert n >= len(acked)
        for i in range(n):
            assert_same(store.label(i), synthetic_label(i))
        assert store.append(synthetic_label(n)) == n
        assert store.append(synthetic_label(n + 1)) == n + 1
    with LabelStore.open(tmp_path, "pong") as store:
        assert len(store) == n + 2 and not store.damage
        assert_same(store.label(n + 1), synthetic_label(n + 1))


@pytest.mark.parametrize("cut", [5, 300, -1], ids=["in-record-header", "in-payload", "last-byte"])
def test_truncated_tail(tmp_path: Path, pong_frames: list[np.ndarray], cut: int,
                        capsys: pytest.CaptureFixture[str]) -> None:
    sizes = fill(tmp_path, pong_frames[:11])
    end, full = sizes[10], sizes[11]
    keep = end + cut if cut > 0 else full + cut
    tail = (tmp_path / FILE_NAME).read_bytes()[end:keep]
    os.truncate(tmp_path / FILE_NAME, keep)

    with pytest.raises(LabelStoreError, match=f"labels.bin: record 10 at byte offset {end}: incomplete") as err:
        LabelStore.open(tmp_path)
    assert "open_or_create" in str(err.value) and "--salvage" in str(err.value)
    with LabelStore.open(tmp_path, recover=True) as store:
        assert len(store) == 10 and store.damage[0].offset == end and store.damage[0].resumes_at is None
        assert store.damage[0].unfinished
        assert_same(store.label(9), make_label(pong_frames[9], 9))
    code, out, _ = cli(capsys, "labels", tmp_path, "--check", "--json")
    assert code == 2 and report(out)["damage"][0]["unfinished_write"] and report(out)["records_ok"] == 10

    store = LabelStore.open_or_create(tmp_path, "pong", PONG_ACTIONS)
    warning = one_line(capsys.readouterr().err, "warning")
    assert f"moved the {keep - end} bytes after the last valid record (byte offset {end}" in warning
    with store:
        assert store.moved_tail == tmp_path / f"{FILE_NAME}.partial-{end}"
        assert store.moved_tail.read_bytes() == tail
        assert store.file.stat().st_size == end
        assert store.append(make_label(pong_frames[10], 10)) == 10
    with LabelStore.open(tmp_path) as store:
        assert len(store) == 11
        for i in range(11):
            assert_same(store.label(i), make_label(pong_frames[i], i))


def flip_in_record_4(path: Path, frames: list[np.ndarray], where: int) -> tuple[list[int], bytes]:
    """A store of 10 labels and a relabel of label 7 with one bit flipped ``where`` bytes into record 4;
    the file sizes after each label and the damaged file's bytes."""
    sizes = fill(path, frames[:10])
    with LabelStore.open_or_create(path, "pong", PONG_ACTIONS) as store:
        store.relabel(7, True, "alice")
    data = bytearray((path / FILE_NAME).read_bytes())
    data[sizes[4] + where] ^= 0x10
    (path / FILE_NAME).write_bytes(bytes(data))
    return sizes, bytes(data)


@pytest.mark.parametrize("where", [5, 200], ids=["length-field", "payload"])
def test_bit_flip_in_the_middle(tmp_path: Path, pong_frames: list[np.ndarray], where: int) -> None:
    sizes, data = flip_in_record_4(tmp_path, pong_frames, where)
    file = tmp_path / FILE_NAME

    for open_store in (lambda: LabelStore.open(tmp_path),
                       lambda: LabelStore.open_or_create(tmp_path, "pong", PONG_ACTIONS)):
        with pytest.raises(LabelStoreError, match=f"labels.bin: record 4 at byte offset {sizes[4]}") as err:
            open_store()
        assert "damaged in the middle" in str(err.value) and f"saferl labels {tmp_path} --salvage" in str(err.value)
    assert file.read_bytes() == data, "a refused open must not change the file"
    assert not list(tmp_path.glob("*.partial-*"))

    with LabelStore.open(tmp_path, recover=True) as store:
        assert [(d.record, d.offset, d.resumes_at) for d in store.damage] == [(4, sizes[4], sizes[5])]
        assert len(store) == 9
        originals = [i for i in range(10) if i != 4]
        for pos, i in enumerate(originals):
            assert_same(store.label(pos, original=True), make_label(pong_frames[i], i))
        assert store.label(6).blocked and store.relabels()[0].index == 6  # the relabel of label 7 follows it
        store.copy_to(tmp_path / "salvaged").close()
    with LabelStore.open_or_create(tmp_path / "salvaged", "pong", PONG_ACTIONS) as salvaged:
        assert len(salvaged) == 9 and salvaged.label(6).blocked and not salvaged.label(6, original=True).blocked
        assert salvaged.append(make_label(pong_frames[4], 10)) == 9  # numbered after label #9, not at #9 again
    with LabelStore.open(tmp_path / "salvaged", "pong") as salvaged:
        assert len(salvaged) == 10 and not salvaged.damage
        assert_same(salvaged.label(9), make_label(pong_frames[4], 10))


def test_check_of_a_sound_store_exits_0(tmp_path: Path, pong_frames: list[np.ndarray],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path, pong_frames[:12])
    with LabelStore.open_or_create(tmp_path, "pong", PONG_ACTIONS) as store:
        store.relabel(3, False, "alice")
    code, out, err = cli(capsys, "labels", tmp_path, "--check", "--json")
    assert (code, err) == (0, "")
    assert report(out) | {"file_bytes": 0} == {
        "path": str(tmp_path), "sound": True, "records_ok": 13, "labels": 12, "relabels": 1, "file_bytes": 0,
        "damaged_stretches": 0, "damaged_bytes": 0, "damage": []}


@pytest.mark.parametrize("where", [5, 200], ids=["length-field", "payload"])
def test_check_and_salvage_a_flipped_byte_from_the_command_line(
        tmp_path: Path, pong_frames: list[np.ndarray], where: int, capsys: pytest.CaptureFixture[str]) -> None:
    store_dir, out_dir = tmp_path / "store", tmp_path / "salvaged"
    sizes, data = flip_in_record_4(store_dir, pong_frames, where)

    code, out, err = cli(capsys, "labels", store_dir, "--check", "--json")
    assert code == 2
    assert f"the label store {store_dir} is damaged" in one_line(err) and "--salvage OUT" in err
    found = report(out)
    assert (found["sound"], found["records_ok"], found["labels"], found["relabels"]) == (False, 10, 9, 1)
    assert [(d["record"], d["offset"], d["bytes"], d["resumes_at"], d["unfinished_write"])
            for d in found["damage"]] == [(4, sizes[4], sizes[5] - sizes[4], sizes[5], False)]
    assert f"damaged: record 4 at byte offset {sizes[4]}" in out

    code, out, err = cli(capsys, "labels", store_dir, "--salvage", out_dir, "--json")
    assert (code, err) == (0, "")
    assert report(out)["salvaged_to"] == str(out_dir) and report(out)["damage"] == found["damage"]
    assert (store_dir / FILE_NAME).read_bytes() == data, "salvage must leave the damaged store as it was"
    assert (out_dir / FILE_NAME).read_bytes() == data[:sizes[4]] + data[sizes[5]:]
    with LabelStore.open(out_dir, "pong") as salvaged:
        assert len(salvaged) == 9 and salvaged.label(6).blocked
        for pos, i in enumerate(i for i in range(10) if i != 4):
            assert_same(salvaged.label(pos, original=True), make_label(pong_frames[i], i))
    assert cli(capsys, "labels", out_dir, "--check")[0] == 0

    code, _, err = cli(capsys, "labels", store_dir, "--salvage", out_dir)
    assert code == 2 and "is not an empty folder" in one_line(err)


@pytest.mark.parametrize("field, value, reason", [
    ("frame", zlib.compress(bytes(100)), "the frame does not decode to (210, 160, 3) uint8"),
    ("frame", b"not zlib at all", "the frame does not decode"),
    ("proposed_action", 6, "label.proposed_action = 6"),
    ("seconds", math.nan, "label.seconds = nan"),
], ids=["frame-too-small", "frame-not-zlib", "action-out-of-range", "seconds-nan"])
def test_check_verifies_what_the_crc_cannot(tmp_path: Path, pong_frames: list[np.ndarray], field: str, value: object,
                                            reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = fill(tmp_path / "store", pong_frames[:6])
    with LabelStore.open_or_create(tmp_path / "store", "pong", PONG_ACTIONS) as store:
        good = store._record(2)._asdict()
        store._store(_LabelRecord(**(good | {"index": 6, field: value})))  # CRC-valid, but not a Pong label
        store.append(make_label(pong_frames[7], 7))
    code, out, err = cli(capsys, "labels", tmp_path / "store", "--check", "--json")
    assert code == 2 and one_line(err)
    [damage] = report(out)["damage"]
    assert damage["offset"] == sizes[6] and reason in damage["reason"], damage
    assert cli(capsys, "labels", tmp_path / "store", "--salvage", tmp_path / "out")[0] == 0
    with LabelStore.open(tmp_path / "out") as salvaged:
        assert len(salvaged) == 7 and not salvaged.damage
        assert_same(salvaged.label(6), make_label(pong_frames[7], 7))


def _set_length(data: bytearray, offset: int, change: object) -> None:
    """Give the record at ``offset`` the payload length ``change(length)``."""
    (length,) = struct.unpack_from("<I", data, offset + 4)
    struct.pack_into("<I", data, offset + 4, change(length))


@pytest.mark.parametrize("damage", [
    lambda data, at: data.__setitem__(at + 300, data[at + 300] ^ 0x04),
    lambda data, at: _set_length(data, at, lambda n: n + 256),
    lambda data, at: _set_length(data, at, lambda n: n - 1),
    lambda data, at: _set_length(data, at, lambda n: n | 1 << 30),
], ids=["payload", "length-longer", "length-shorter", "length-impossible"])
def test_bit_rot_in_the_last_record_is_damage_not_a_cut_short_write(
        tmp_path: Path, pong_frames: list[np.ndarray], damage: object, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = fill(tmp_path, pong_frames[:10])
    file = tmp_path / FILE_NAME
    data = bytearray(file.read_bytes())
    damage(data, sizes[9])
    file.write_bytes(bytes(data))

    for open_store in (lambda: LabelStore.open(tmp_path),
                       lambda: LabelStore.open_or_create(tmp_path, "pong", PONG_ACTIONS)):
        with pytest.raises(LabelStoreError, match=f"record 9 at byte offset {sizes[9]}.*not a write cut short") as err:
            open_store()
        assert f"saferl labels {tmp_path} --check" in str(err.value) and "--salvage" in str(err.value)
    assert file.read_bytes() == bytes(data) and not list(tmp_path.glob("*.partial-*")), "a complete label moved aside"
    code, out, err = cli(capsys, "labels", tmp_path, "--check", "--json")
    assert code == 2 and one_line(err)
    assert [(d["offset"], d["resumes_at"], d["unfinished_write"]) for d in report(out)["damage"]] == [
        (sizes[9], None, False)]


def test_oversee_resumes_a_cut_short_store_with_a_one_line_warning(
        tmp_path: Path, pong_frames: list[np.ndarray], capsys: pytest.CaptureFixture[str]) -> None:
    sizes = fill(tmp_path, pong_frames[:11])
    os.truncate(tmp_path / FILE_NAME, sizes[10] + 100)
    code, _, err = cli(capsys, "oversee", "--game", "pong", "--steps", 5, "--out", tmp_path, "--no-progress")
    assert code == 0
    assert f"moved the 100 bytes after the last valid record (byte offset {sizes[10]}" in one_line(err, "warning")
    assert (tmp_path / f"{FILE_NAME}.partial-{sizes[10]}").stat().st_size == 100
    with LabelStore.open(tmp_path, "pong") as store:
        assert len(store) == 15 and store.arrays()["episode"][10] == 1
        for i in range(10):
            assert_same(store.label(i), make_label(pong_frames[i], i))


@pytest.mark.parametrize("make, says", [
    (lambda path: path.write_text("not a folder"), "is a file, not a label store folder"),
    (lambda path: path.mkdir(), "no label store at"),
    (lambda path: (path.mkdir(), (path / FILE_NAME).write_bytes(b"PK\x03\x04 a zip file, say")),
     "is not a saferl label store"),
    (lambda path: (path.mkdir(), (path / FILE_NAME).mkdir()), "is not a file"),
], ids=["a-file", "an-empty-folder", "not-a-store-file", "labels.bin-a-folder"])
@pytest.mark.parametrize("flags", [[], ["--check"], ["--salvage", "out"]], ids=["summary", "check", "salvage"])
def test_labels_on_what_is_not_a_store_exits_2_with_one_line(tmp_path: Path, make: object, says: str,
                                                              flags: list[str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path / "thing")
    code, out, err = cli(capsys, "labels", tmp_path / "thing", *[tmp_path / f if f == "out" else f for f in flags])
    assert (code, out) == (2, "") and str(tmp_path / "thing") in one_line(err) and says in err
    assert not (tmp_path / "out").exists()


def write_header(folder: Path, header: dict | bytes, json_length: int | None = None) -> None:
    """A store in ``folder`` whose header holds ``header`` (with a correct CRC) and no records."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    folder.mkdir(exist_ok=True)
    n = len(body) if json_length is None else json_length
    (folder / FILE_NAME).write_bytes(struct.pack("<8sHII", b"SAFERLLB", 1, n, zlib.crc32(body)) + body)


GOOD_HEADER = {"format": "saferl-labels", "game": "pong", "action_names": PONG_ACTIONS, "frame_shape": [210, 160, 3],
               "frame_codec": "zlib-6"}


@pytest.mark.parametrize("change, fault", [
    ({"frame_shape": [100_000, 100_000, 3]}, "frame_shape.0: input should be less than or equal to 4096"),
    ({"frame_shape": [210, 160, 4]}, "frame_shape: value error, an rgb frame shape is (height, width, 3)"),
    ({"frame_shape": [210, 160]}, "frame_shape: list should have at least 3 items"),
    ({"frame_shape": [210.0, 160, 3]}, "frame_shape.0: input should be a valid integer"),
    ({"frame_shape": "big"}, "frame_shape: input should be a valid list"),
    ({"game": 5}, "game: input should be a valid string"),
    ({"game": ""}, "game: string should have at least 1 character"),
    ({"action_names": [0, 1]}, "action_names.0: input should be a valid string"),
    ({"action_names": []}, "action_names: list should have at least 1 item"),
    ({"action_names": [f"A{i}" for i in range(300)]}, "action_names: list should have at most 256 items"),
    ({"frame_codec": "lz4"}, "frame_codec: input should be 'zlib-6'"),
    ({"action_names": None}, "action_names: input should be a valid list"),
], ids=["100-GB-frame", "4-channels", "2-dimensions", "float-side", "shape-a-string", "game-a-number", "game-empty",
        "action-numbers", "no-actions", "300-actions", "other-codec", "actions-null"])
def test_a_header_is_checked_before_it_is_trusted(tmp_path: Path, change: dict, fault: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    write_header(tmp_path / "store", GOOD_HEADER | change)
    with pytest.raises(LabelStoreError) as err:
        LabelStore.open(tmp_path / "store")
    assert str(err.value).startswith(f"{tmp_path / 'store' / FILE_NAME} header: {fault}"), err.value
    code, _, err = cli(capsys, "labels", tmp_path / "store", "--check")
    assert code == 2 and fault in one_line(err)


def test_a_header_too_big_or_too_deep_is_refused_before_it_is_read(tmp_path: Path) -> None:
    write_header(tmp_path / "good", GOOD_HEADER)
    assert LabelStore.open(tmp_path / "good").frame_shape == (210, 160, 3)
    write_header(tmp_path / "huge", GOOD_HEADER, json_length=2**32 - 1)
    tracemalloc.start()
    try:
        with pytest.raises(LabelStoreError, match="claims 4,294,967,295 bytes of JSON"):
            LabelStore.open(tmp_path / "huge")
        assert tracemalloc.get_traced_memory()[1] < 2**24
    finally:
        tracemalloc.stop()
    write_header(tmp_path / "deep", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(LabelStoreError, match="header nests"):
        LabelStore.open(tmp_path / "deep")
    with pytest.raises(LabelStoreError, match=f"cannot create a label store at {tmp_path / 'new' / FILE_NAME}: "
                                              "frame_shape: list should have at least 3 items"):
        LabelStore.create(tmp_path / "new", "pong", PONG_ACTIONS, (84, 84))
    assert not (tmp_path / "new" / FILE_NAME).exists()


def test_wrong_game_and_other_misuse(tmp_path: Path, pong_frames: list[np.ndarray]) -> None:
    fill(tmp_path / "pong", pong_frames[:2])
    file = tmp_path / "pong" / FILE_NAME
    says = f"{file} holds labels of game 'pong', not 'space_invaders'.*recorded on space_invaders"
    with pytest.raises(LabelStoreError, match=says):
        LabelStore.open(tmp_path / "pong", "space_invaders")
    with pytest.raises(LabelStoreError, match="not 'space_invaders'"):
        LabelStore.open_or_create(tmp_path / "pong", "space_invaders", ["NOOP", "FIRE"])
    with pytest.raises(LabelStoreError, match="action_names"):
        LabelStore.open_or_create(tmp_path / "pong", "pong", ["NOOP", "FIRE"])
    with pytest.raises(LabelStoreError, match="already exists.*open_or_create"):
        LabelStore.create(tmp_path / "pong", "pong", PONG_ACTIONS)
    with pytest.raises(LabelStoreError, match="no label store at"):
        LabelStore.open(tmp_path / "missing")
    with LabelStore.open_or_create(tmp_path / "pong", "pong", PONG_ACTIONS):
        with pytest.raises(LabelStoreError, match="another writer"):
            LabelStore.open_or_create(tmp_path / "pong", "pong", PONG_ACTIONS)
    with LabelStore.open(tmp_path / "pong") as store:
        with pytest.raises(LabelStoreError, match="read-only"):
            store.append(make_label(pong_frames[0], 0))


@pytest.mark.parametrize("field, value", [
    ("frame", np.zeros((84, 84), np.uint8)), ("frame", np.zeros((210, 160, 3), np.float32)),
    ("proposed_action", 6), ("executed_action", -2), ("blocked", "yes"), ("catastrophe", 1), ("episode", -1),
    ("step", 1.5), ("overseer", ""), ("seconds", -1.0), ("seconds", math.nan), ("score", math.inf),
])
def test_append_rejects_a_bad_field(tmp_path: Path, pong_frames: list[np.ndarray], field: str, value: object) -> None:
    with LabelStore.create(tmp_path, "pong", PONG_ACTIONS) as store:
        size = store.file.stat().st_size
        fields = {**make_label(pong_frames[0], 1).__dict__, field: value}
        with pytest.raises(LabelStoreError, match=f"label.{field}"):
            store.append(Label(**fields))
        assert len(store) == 0 and store.file.stat().st_size == size


def test_relabel_overlay_keeps_the_original(tmp_path: Path, pong_frames: list[np.ndarray]) -> None:
    fill(tmp_path, pong_frames[:5])  # label 3 is blocked, 2 is not
    with LabelStore.open_or_create(tmp_path, "pong", PONG_ACTIONS) as store:
        store.relabel(2, True, "alice", seconds=4.0)
        store.relabel(2, False, "bob")
        store.relabel(3, False, "alice")
        with pytest.raises(IndexError):
            store.relabel(5, True, "alice")
        with pytest.raises(LabelStoreError, match="relabel.reviewer"):
            store.relabel(1, True, "")
    with LabelStore.open(tmp_path) as store:
        assert [store.label(i).blocked for i in range(5)] == [True, False, False, False, False]
        assert [store.label(i, original=True).blocked for i in range(5)] == [True, False, False, True, False]
        assert [label.blocked for label in store.labels(original=True)][3]
        a = store.arrays()
        assert a["blocked"].tolist() == [True, False, False, False, False]
        assert a["blocked_original"].tolist() == [True, False, False, True, False]
        assert a["relabeled"].tolist() == [False, False, True, True, False]
        assert [(r.index, r.blocked, r.reviewer) for r in store.relabels()] == [
            (2, True, "alice"), (2, False, "bob"), (3, False, "alice")]
        summary = store.summary()
    assert (summary["relabels"], summary["relabeled_labels"], summary["review_seconds"]) == (3, 2, 4.0)
    assert summary["blocks"] == 1 and summary["labels"] == 5


TOY_ACTIONS = ["A", "B", "C"]
TOY_SHAPE = (6, 5, 3)


def toy_label(seed: int) -> Label:
    rng = np.random.default_rng(seed)
    return Label(frame=rng.integers(0, 256, TOY_SHAPE, dtype=np.uint8), proposed_action=int(rng.integers(3)),
                 executed_action=int(rng.integers(3)), blocked=bool(rng.integers(2)),
                 catastrophe=bool(rng.integers(2)), episode=int(rng.integers(2**40)), step=int(rng.integers(10**6)),
                 overseer=["human", "scripted", "hümän ✓"][int(rng.integers(3))], seconds=float(rng.random() * 9),
                 score=math.nan if rng.random() < 0.3 else float(rng.normal()))


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("relabel"), st.integers(0, 1000), st.booleans()),
    st.just(("reopen",)),
), max_size=25)


@settings(max_examples=60, deadline=None)
@given(OPERATIONS)
def test_any_appends_relabels_and_reopens_read_back_exactly(operations: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as path:
        store = LabelStore.create(path, "toy", TOY_ACTIONS, TOY_SHAPE)
        labels: list[Label] = []
        relabeled: dict[int, bool] = {}
        for op in operations:
            if op[0] == "append":
                labels.append(toy_label(op[1]))
                assert store.append(labels[-1]) == len(labels) - 1
            elif op[0] == "relabel" and labels:
                store.relabel(op[1] % len(labels), op[2], "reviewer")
                relabeled[op[1] % len(labels)] = op[2]
            elif op[0] == "reopen":
                store.close()
                store = LabelStore.open_or_create(path, "toy", TOY_ACTIONS, TOY_SHAPE)
        store.close()
        with LabelStore.open(path, "toy") as store:
            assert len(store) == len(labels) and not store.damage
            for i, want in enumerate(labels):
                assert_same(store.label(i, original=True), want)
                assert store.label(i).blocked == relabeled.get(i, want.blocked)
            assert store.arrays()["blocked"].tolist() == [relabeled.get(i, w.blocked) for i, w in enumerate(labels)]
            assert store.summary()["relabeled_labels"] == len(relabeled)


@pytest.mark.parametrize("every, appends, during", [(3, 7, 2), (1, 4, 4), (0, 5, 0)])
def test_fsync_every_n_records_and_once_more_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int,
                                                      appends: int, during: int) -> None:
    """fsync after every ``every`` records (0: never while appending); close syncs the records still unsynced."""
    frame = np.zeros((210, 160, 3), np.uint8)
    store = LabelStore.create(tmp_path / "run", "pong", PONG_ACTIONS, fsync_every=every)
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == str(store.file.resolve()):
            synced.append(len(store))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for i in range(appends):
        store.append(make_label(frame, i))
    assert synced == [every * k for k in range(1, during + 1)], "synced right after every n-th record"
    store.close()
    assert synced[during:] == ([appends] if appends % every else []) if every else [appends]
