"""An append-only, crash-safe dataset of overseer decisions (labels) on disk.

A store is a directory holding one file, ``labels.bin`` (integers little-endian)::

    header  = b"SAFERLLB" | format version u16 | json length u32 | crc32(json) u32 | json
              json: {"game", "action_names", "frame_shape", "frame_codec", "created", "saferl_version"}
    record  = b"\\xabLR\\xcd" | payload length u32 | crc32(length bytes + payload) u32 | payload
    payload = b"L" index u64, proposed i32, executed i32, flags u8 (1 blocked, 2 catastrophe),
              episode i64, step i64, seconds f64, score f64, overseer length u16, overseer utf-8,
              frame (zlib of the raw uint8 HxWx3 bytes)
            | b"R" label index u64, blocked u8, seconds f64, unix time f64, reviewer length u16, reviewer utf-8

Each record goes to the OS in one ``os.write`` before ``append`` returns, so an acknowledged label
survives ``kill -9`` of the writer (``fsync_every`` also makes it survive a machine crash).
A relabel ("R") never rewrites a label: readers apply the latest relabel of each label and can
still read the original. Readers keep only an index of offsets and small fields in memory and
decode frames on demand.

The header is checked against :class:`StoreHeader` before anything is sized from it. A file that ends
inside a record (fewer bytes than its length field says: a write cut short, never acknowledged) is
moved aside when the store is opened for appending; any other invalid record, the last one included,
is damage, which ``saferl labels DIR --check`` reports and ``saferl labels DIR --salvage OUT`` repairs.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import json
import logging
import math
import os
import stat
import struct
import sys
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, field_validator

import saferl
from saferl.errors import SaferlError
from saferl.env.ground_truth import HOLD
from saferl.schema import MAX_JSON_BYTES, Strict, parse_json, validate

FILE_NAME = "labels.bin"
MAGIC = b"SAFERLLB"
FORMAT_VERSION = 1
RECORD_SYNC = b"\xabLR\xcd"
FRAME_CODEC = "zlib-6"
ZLIB_LEVEL = 6
ATARI_FRAME_SHAPE = (210, 160, 3)
MAX_FRAME_SIDE = 4096  # pixels: a 4096x4096 RGB frame is 48 MiB, far above any game's
MAX_ACTIONS = 256
MAX_NAME = 64  # characters of a game or action name

_HEADER = struct.Struct("<8sHII")  # magic, version, json length, crc32(json)
_RECORD = struct.Struct("<4sII")  # sync, payload length, crc32(length bytes + payload)
_LENGTH = struct.Struct("<I")
_LABEL = struct.Struct("<cQiiBqqddH")
_RELABEL = struct.Struct("<cQBddH")
_I32 = 2**31
_I64 = 2**63

# The in-memory index: one typed column per label (frames stay on disk).
_COLUMNS = {
    "offset": "q",
    "index": "q",
    "proposed_action": "q",
    "executed_action": "q",
    "blocked": "B",
    "catastrophe": "B",
    "episode": "q",
    "step": "q",
    "seconds": "d",
    "score": "d",
    "overseer": "I",
}
_DTYPES = {"q": np.int64, "B": np.uint8, "d": np.float64, "I": np.uint32}
# What each stored field must be (the kinds of LabelStore._fault), checked on append and by --check.
_LABEL_FIELDS = {"proposed_action": "action", "executed_action": "executed", "blocked": bool, "catastrophe": bool,
                 "episode": int, "step": int, "overseer": str, "seconds": float, "score": "score"}
_RELABEL_FIELDS = {"blocked": bool, "reviewer": str, "seconds": float}

_log = logging.getLogger(__name__)


class _StderrLine(logging.Handler):
    """Writes each record as one ``saferl: warning: ...`` line to the current ``sys.stderr`` (no source line)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"saferl: {record.levelname.lower()}: {self.format(record)}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


if not _log.handlers:
    _log.addHandler(_StderrLine(logging.WARNING))
    _log.propagate = False


class LabelStoreError(SaferlError):
    """A label store that cannot be used as asked: the message names the file and how to fix it."""


@contextmanager
def _as_store_error() -> Iterator[None]:
    """Re-raise a plain SaferlError (from saferl.schema) as a LabelStoreError, which callers catch."""
    try:
        yield
    except LabelStoreError:
        raise
    except SaferlError as err:
        raise LabelStoreError(str(err)) from None


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Side = Annotated[int, Field(ge=1, le=MAX_FRAME_SIDE)]


class StoreHeader(Strict):
    """The JSON header of ``labels.bin``: the game, its action names and the RGB frame shape of every record."""

    format: Literal["saferl-labels"] = "saferl-labels"
    game: Name
    action_names: Annotated[list[Name], Field(min_length=1, max_length=MAX_ACTIONS)]
    frame_shape: Annotated[list[Side], Field(min_length=3, max_length=3)]
    frame_codec: Literal["zlib-6"] = FRAME_CODEC

    @field_validator("frame_shape")
    @classmethod
    def _rgb(cls, shape: list[int]) -> list[int]:
        if shape[2] != 3:
            raise ValueError("an RGB frame shape is (height, width, 3)")
        return shape


@dataclass(frozen=True, eq=False)
class Label:
    """One overseer decision.

    :param frame: the RGB frame the overseer saw (uint8, the store's frame shape, e.g. 210x160x3).
    :param proposed_action: the action the agent chose.
    :param executed_action: the action the env ran (HOLD, -1, when a pruned step left the env as it was).
    :param blocked: whether the overseer blocked the proposed action.
    :param catastrophe: the game's ground truth for this step.
    :param episode: the episode number.
    :param step: the step within the episode.
    :param overseer: who decided (``human``, ``scripted``, ...).
    :param seconds: the time the overseer spent on this decision (human labour).
    :param score: the overseer's block score; NaN when it has none.
    """

    frame: np.ndarray
    proposed_action: int
    executed_action: int
    blocked: bool
    catastrophe: bool
    episode: int
    step: int
    overseer: str
    seconds: float = 0.0
    score: float = math.nan


@dataclass(frozen=True)
class Relabel:
    """A reviewer's correction of label ``index``'s block decision (the original is kept)."""

    index: int
    blocked: bool
    reviewer: str
    seconds: float
    time: float


@dataclass(frozen=True)
class Damage:
    """A stretch of the file that holds no valid record, found when opening with ``recover=True``.

    :param record: the record number (counting from 0) where the damage starts.
    :param offset: the byte offset where the damage starts.
    :param reason: what is wrong.
    :param resumes_at: the byte offset of the next valid record, or None when none follows.
    :param unfinished: the file ends inside this record (fewer bytes than its length field says): a write
        cut short, never acknowledged, rather than bytes changed after writing.
    """

    record: int
    offset: int
    reason: str
    resumes_at: int | None
    unfinished: bool = False


class _LabelRecord(NamedTuple):
    index: int
    proposed_action: int
    executed_action: int
    blocked: bool
    catastrophe: bool
    episode: int
    step: int
    seconds: float
    score: float
    overseer: str
    frame: bytes


class _RelabelRecord(NamedTuple):
    index: int
    blocked: bool
    seconds: float
    time: float
    reviewer: str


class _Read(NamedTuple):
    """What reading the record at an offset found: why it is invalid (or None), its length, the record."""

    reason: str | None
    length: int = 0
    record: _LabelRecord | _RelabelRecord | None = None
    unfinished: bool = False


def _encode(record: _LabelRecord | _RelabelRecord) -> bytes:
    """The framed bytes of one record (sync, length, CRC, payload)."""
    if isinstance(record, _LabelRecord):
        who = record.overseer.encode()
        flags = int(record.blocked) | int(record.catastrophe) << 1
        head = _LABEL.pack(b"L", record.index, record.proposed_action, record.executed_action, flags,
                           record.episode, record.step, record.seconds, record.score, len(who))
        payload = head + who + record.frame
    else:
        who = record.reviewer.encode()
        payload = _RELABEL.pack(b"R", record.index, int(record.blocked), record.seconds, record.time, len(who)) + who
    length = _LENGTH.pack(len(payload))
    return _RECORD.pack(RECORD_SYNC, len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


def _decode(payload: bytes) -> _LabelRecord | _RelabelRecord:
    """The record in a CRC-checked payload; ValueError or struct.error when it makes no sense."""
    kind = payload[:1]
    if kind == b"L":
        _, index, proposed, executed, flags, episode, step, seconds, score, n = _LABEL.unpack_from(payload)
        who = payload[_LABEL.size:_LABEL.size + n]
        if len(who) != n or flags > 3:
            raise ValueError("label fields do not fit the record")
        return _LabelRecord(index, proposed, executed, bool(flags & 1), bool(flags & 2), episode, step,
                            seconds, score, who.decode(), payload[_LABEL.size + n:])
    if kind == b"R":
        _, index, blocked, seconds, when, n = _RELABEL.unpack_from(payload)
        if len(payload) != _RELABEL.size + n or blocked > 1:
            raise ValueError("relabel fields do not fit the record")
        return _RelabelRecord(index, bool(blocked), seconds, when, payload[_RELABEL.size:].decode())
    raise ValueError(f"unknown record kind {kind!r}")


def _inflate(data: bytes, size: int) -> bytes:
    """The ``size`` bytes that zlib ``data`` holds; ValueError when it holds something else (never inflating more)."""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data, size + 1)
    except zlib.error as e:
        raise ValueError(str(e)) from None
    if len(raw) != size:
        raise ValueError(f"it inflates to {'more than ' * (len(raw) > size)}{min(len(raw), size)} bytes, not {size}")
    if not inflater.eof or inflater.unused_data:
        raise ValueError("it is not one whole zlib stream")
    return raw


def _store_file(path: str | os.PathLike[str]) -> Path:
    """The data file of the store at ``path`` (a directory, or the data file itself)."""
    path = Path(path)
    return path if path.name == FILE_NAME and path.is_file() else path / FILE_NAME


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LabelStore:
    """An append-only store of :class:`Label` s in a directory; use ``create``, ``open`` or ``open_or_create``."""

    def __init__(self, file: Path, fd: int, writable: bool, fsync_every: int) -> None:
        self.file = file
        self.path = file.parent
        self.writable = writable
        self.fsync_every = fsync_every
        self.damage: list[Damage] = []
        self.moved_tail: Path | None = None
        self._fd: int | None = fd
        self.header, checked, self._start = self._read_header()
        self.game: str = checked.game
        self.action_names: list[str] = list(checked.action_names)
        self.frame_shape: tuple[int, ...] = tuple(checked.frame_shape)
        self._end = self._start
        self._frame_bytes = math.prod(self.frame_shape)
        self._max_payload = _LABEL.size + 2**16 + self._frame_bytes + self._frame_bytes // 100 + 1024
        self._cols = {name: array(code) for name, code in _COLUMNS.items()}
        self._overseers: list[str] = []
        self._overseer_codes: dict[str, int] = {}
        self._relabels: list[Relabel] = []
        self._latest: dict[int, Relabel] = {}
        self._spans: list[list[int]] = []  # [start, end) byte ranges of consecutive valid records
        self._unsynced = 0

    # ----- opening -----

    @classmethod
    def create(cls, path: str | os.PathLike[str], game: str, action_names: Sequence[str],
               frame_shape: Sequence[int] = ATARI_FRAME_SHAPE, fsync_every: int = 0) -> LabelStore:
        """A new, empty store in directory ``path`` (made if missing), open for appending.

        :param fsync_every: fsync after every this many records (0: only on close); appends reach
            the OS at once either way, so they survive the writer being killed.
        """
        file = _store_file(path)
        header = {"format": "saferl-labels", "game": game, "action_names": [str(a) for a in action_names],
                  "frame_shape": [int(n) for n in frame_shape], "frame_codec": FRAME_CODEC,
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "saferl_version": saferl.__version__}
        with _as_store_error():
            validate(StoreHeader, header, f"cannot create a label store at {file}",
                     "give the game, its action names and the RGB frame shape (H, W, 3)")
        body = json.dumps(header, sort_keys=True).encode()
        cls._write_new(file, [_HEADER.pack(MAGIC, FORMAT_VERSION, len(body), zlib.crc32(body)) + body])
        return cls.open(file.parent, game, writable=True, fsync_every=fsync_every)

    @staticmethod
    def _write_new(file: Path, chunks: Iterable[bytes]) -> None:
        """Write a new data file from ``chunks`` all at once: it appears whole or not at all, never replacing one."""
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LabelStoreError(f"cannot make the label store folder {file.parent}: {err.strerror or err}") from None
        tmp = file.with_name(f"{FILE_NAME}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, file)  # atomic, and never replaces an existing store
        except FileExistsError:
            raise LabelStoreError(f"a label store already exists at {file}: append to it with "
                                  "LabelStore.open_or_create (resume), or choose another --out directory") from None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(file.parent)

    @classmethod
    def open(cls, path: str | os.PathLike[str], game: str | None = None, *, writable: bool = False,
             recover: bool = False, verify: bool = False, fsync_every: int = 0) -> LabelStore:
        """The existing store at ``path``.

        :param game: when given, the store must hold labels of this game.
        :param writable: open for appending; an unfinished record at the end of the file (a writer
            killed mid-write, never acknowledged) is moved to ``labels.bin.partial-<offset>`` first.
        :param recover: read-only, skipping damaged stretches (listed in ``store.damage``) so that
            every valid record can still be read.
        :param verify: also inflate every frame and check every field against the header (slower; a record that
            fails is damage like a CRC mismatch).
        """
        file = _store_file(path)
        if recover and writable:
            raise LabelStoreError(f"{file}: recover=True opens read-only; copy the valid labels to a new "
                                  "store with store.copy_to(new_dir) and append there")
        try:
            fd = os.open(file, os.O_RDWR | os.O_APPEND if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise LabelStoreError(f"no label store at {file.parent} ({FILE_NAME} is missing): check the path, "
                                  "or create one with saferl oversee --out DIR (LabelStore.create)") from None
        except NotADirectoryError:
            raise LabelStoreError(f"{Path(path)} is a file, not a label store folder: give the folder that holds "
                                  f"{FILE_NAME} (saferl oversee --out DIR)") from None
        except OSError as err:
            raise LabelStoreError(f"cannot open the label store {file}: {err.strerror or err}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LabelStoreError(f"{file} is not a file, so {file.parent} is not a label store: check the path")
            if writable:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LabelStoreError(f"another writer is appending to {file} (a running process, or a "
                                          "store still open here): stop or close it, or choose another "
                                          "--out directory") from None
            store = cls(file, fd, writable, fsync_every)
            if game is not None and store.game != game:
                raise LabelStoreError(f"{file} holds labels of game {store.game!r}, not {game!r}: use a store "
                                      f"recorded on {game}, or work on {store.game} (its game) with it")
            store._scan(recover, verify)
        except BaseException:
            os.close(fd)
            raise
        return store

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str], game: str, action_names: Sequence[str],
                       frame_shape: Sequence[int] = ATARI_FRAME_SHAPE, fsync_every: int = 0) -> LabelStore:
        """The store at ``path`` open for appending (resuming a run), created if there is none."""
        file = _store_file(path)
        if not file.exists():
            try:
                return cls.create(path, game, action_names, frame_shape, fsync_every)
            except LabelStoreError:
                if not file.exists():
                    raise
        store = cls.open(path, game, writable=True, fsync_every=fsync_every)
        for name, want, have in (("action_names", [str(a) for a in action_names], store.action_names),
                                 ("frame_shape", tuple(int(n) for n in frame_shape), store.frame_shape)):
            if want != have:
                store.close()
                raise LabelStoreError(f"{file} holds labels with {name} {have}, not {want}: "
                                      "choose another --out directory for these labels")
        return store

    def _read_header(self) -> tuple[dict[str, Any], StoreHeader, int]:
        """The header as written, as checked, and the byte offset of the first record."""
        head = os.pread(self._fd, _HEADER.size, 0)
        if len(head) < _HEADER.size or head[:len(MAGIC)] != MAGIC:
            raise LabelStoreError(f"{self.file} is not a saferl label store (no {MAGIC!r} magic bytes): "
                                  "check the path")
        _, version, n, crc = _HEADER.unpack(head)
        if version != FORMAT_VERSION:
            raise LabelStoreError(f"{self.file} has label format version {version}; this saferl "
                                  f"({saferl.__version__}) reads version {FORMAT_VERSION}: use a matching saferl")
        damaged = f"{self.file}: the header (bytes 0..{_HEADER.size + n}) is damaged"
        if n > MAX_JSON_BYTES:
            raise LabelStoreError(f"{damaged} (it claims {n:,} bytes of JSON); restore the file from a backup")
        body = os.pread(self._fd, n, _HEADER.size)
        if len(body) != n or zlib.crc32(body) != crc:
            raise LabelStoreError(f"{damaged} (length or CRC mismatch); restore the file from a backup")
        with _as_store_error():
            header = parse_json(body, f"{self.file} header")
            checked = validate(StoreHeader, header, f"{self.file} header", "restore the file from a backup")
        return header, checked, _HEADER.size + n

    # ----- scanning and the index -----

    def _read_record(self, offset: int, size: int) -> _Read:
        """The record at ``offset`` of a file of ``size`` bytes, or why there is none."""
        head = os.pread(self._open_fd("read"), _RECORD.size, offset)
        if len(head) < _RECORD.size:
            prefix = head[:len(RECORD_SYNC)] == RECORD_SYNC[:len(head)]
            return _Read(f"incomplete record header ({len(head)} of {_RECORD.size} bytes)" if prefix
                         else "no record marker", unfinished=prefix)
        sync, n, crc = _RECORD.unpack(head)
        if sync != RECORD_SYNC:
            return _Read("no record marker")
        if n > self._max_payload:
            return _Read(f"impossible record length {n}")
        present = min(n, size - offset - _RECORD.size)
        payload = os.pread(self._fd, present, offset + _RECORD.size)
        if present < n:
            if zlib.crc32(payload, zlib.crc32(_LENGTH.pack(len(payload)))) == crc:
                return _Read(f"the length field says {n} bytes but the {len(payload)} present are the whole record "
                             "(its CRC matches): the length changed after writing")
            return _Read(f"incomplete record ({size - offset} of {_RECORD.size + n} bytes present)", unfinished=True)
        if len(payload) != n or zlib.crc32(payload, zlib.crc32(head[4:8])) != crc:
            return _Read("CRC mismatch (the bytes changed after writing)")
        try:
            return _Read(None, _RECORD.size + n, _decode(payload))
        except (ValueError, struct.error) as e:
            return _Read(f"unreadable record ({e})")

    def _next_valid(self, start: int, size: int) -> int | None:
        """The offset of the first valid record at or after ``start``, if any."""
        chunk = 1 << 20
        for base in range(start, size, chunk):
            data = os.pread(self._fd, chunk + len(RECORD_SYNC) - 1, base)
            k = data.find(RECORD_SYNC)
            while k != -1:
                if self._read_record(base + k, size).reason is None:
                    return base + k
                k = data.find(RECORD_SYNC, k + 1)
        return None

    def _verify(self, record: _LabelRecord | _RelabelRecord) -> str | None:
        """Why a CRC-valid record does not fit the header (a frame that does not inflate to it, a field out
        of range), or None."""
        if isinstance(record, _RelabelRecord):
            return self._fault("relabel", record._asdict(), _RELABEL_FIELDS | {"time": float})
        try:
            _inflate(record.frame, self._frame_bytes)
        except ValueError as e:
            return f"the frame does not decode to {self.frame_shape} uint8 ({e})"
        return self._fault("label", record._asdict(), _LABEL_FIELDS)

    def _add(self, record: _LabelRecord | _RelabelRecord, offset: int) -> str | None:
        """Add a record to the in-memory index; the reason when it does not fit the store."""
        seqs = self._cols["index"]
        if isinstance(record, _RelabelRecord):
            pos = bisect.bisect_left(seqs, record.index)
            if pos == len(seqs) or seqs[pos] != record.index:
                return f"relabel of label #{record.index}, which is not in the store"
            relabel = Relabel(pos, record.blocked, record.reviewer, record.seconds, record.time)
            self._relabels.append(relabel)
            self._latest[pos] = relabel
            return None
        if seqs and record.index <= seqs[-1]:
            return f"label #{record.index} after label #{seqs[-1]}"
        code = self._overseer_codes.setdefault(record.overseer, len(self._overseers))
        if code == len(self._overseers):
            self._overseers.append(record.overseer)
        values = record._asdict() | {"offset": offset, "overseer": code}
        for name, column in self._cols.items():
            column.append(values[name])
        return None

    def _keep(self, offset: int, length: int) -> None:
        """Note the valid record at ``offset`` (the spans that copy_to copies)."""
        if self._spans and self._spans[-1][1] == offset:
            self._spans[-1][1] += length
        else:
            self._spans.append([offset, offset + length])
        self._end = offset + length

    def _scan(self, recover: bool, verify: bool = False) -> None:
        """Index every record; on damage, raise, recover, or (writable) move an unfinished tail aside."""
        size = os.fstat(self._fd).st_size
        offset, record = self._end, 0
        while offset < size:
            read = self._read_record(offset, size)
            reason = read.reason
            if reason is None and verify:
                reason = self._verify(read.record)
            if reason is None:
                reason = self._add(read.record, offset)
            if reason is None:
                self._keep(offset, read.length)
                offset += read.length
            else:
                resumes = self._next_valid(offset + 1, size)
                self.damage.append(Damage(record, offset, reason, resumes, read.unfinished and resumes is None))
                if resumes is None or not recover:
                    break
                offset = resumes
            record += 1
        if not self.damage or recover:
            return
        first = self.damage[0]
        if first.unfinished and self.writable:
            self._move_tail(first, size)
            return
        raise LabelStoreError(self._damage_message(first, size))

    def _damage_message(self, damage: Damage, size: int) -> str:
        where = f"{self.file}: record {damage.record} at byte offset {damage.offset}: {damage.reason}"
        repair = (f"saferl labels {self.path} --check reports every damaged record, and saferl labels {self.path} "
                  "--salvage NEW_DIR copies every valid one to a new store (keep this file as a backup)")
        if damage.unfinished:
            return (f"{where}; the last {size - damage.offset} bytes hold no complete record (a write cut short, so "
                    f"never acknowledged). Appending to the store (saferl oversee --out {self.path}, or "
                    f"LabelStore.open_or_create) moves them to a {FILE_NAME}.partial-{damage.offset} side file; "
                    f"or {repair}")
        if damage.resumes_at is None:
            return (f"{where}; the last record is all there but its bytes changed after writing (damage, not a write "
                    f"cut short), so the file was left unchanged: {repair}")
        return (f"{where}; valid records follow at byte offset {damage.resumes_at}, so the file is damaged "
                f"in the middle and was left unchanged: {repair}")

    def _move_tail(self, damage: Damage, size: int) -> None:
        """Move the invalid bytes at the end (an unfinished write) to a side file and truncate, losing nothing."""
        side = self.file.with_name(f"{FILE_NAME}.partial-{damage.offset}")
        for n in range(1, 1000):
            if not side.exists():
                break
            side = self.file.with_name(f"{FILE_NAME}.partial-{damage.offset}-{n}")
        with open(side, "xb") as out:
            out.write(os.pread(self._fd, size - damage.offset, damage.offset))
            out.flush()
            os.fsync(out.fileno())
        os.ftruncate(self._fd, damage.offset)
        os.fsync(self._fd)
        self.moved_tail = side
        _log.warning("%s: moved the %d bytes after the last valid record (byte offset %d: %s) to %s; appending "
                     "continues there", self.file, size - damage.offset, damage.offset, damage.reason, side)
        self.damage.clear()

    # ----- writing -----

    def append(self, label: Label) -> int:
        """Store ``label`` durably (it survives the writer being killed once this returns); its index.

        The record numbers labels on from the last stored one (a salvaged store may skip the numbers of
        labels it lost); indices given and returned are positions, 0 to ``len(store) - 1``.
        """
        self._writable("append")
        self._check(label)
        seqs = self._cols["index"]
        record = _LabelRecord(seqs[-1] + 1 if seqs else 0, int(label.proposed_action), int(label.executed_action),
                              bool(label.blocked), bool(label.catastrophe), int(label.episode), int(label.step),
                              float(label.seconds), float(label.score), label.overseer,
                              zlib.compress(label.frame.tobytes(), ZLIB_LEVEL))
        self._store(record)
        return len(self) - 1

    def relabel(self, index: int, blocked: bool, reviewer: str, seconds: float = 0.0) -> Relabel:
        """Record a reviewer's block decision for label ``index``; the original label stays readable."""
        self._writable("relabel")
        pos = self._position(index)
        fault = self._fault("relabel", {"blocked": blocked, "reviewer": reviewer, "seconds": seconds}, _RELABEL_FIELDS)
        if fault:
            raise LabelStoreError(f"cannot relabel in {self.file}: {fault}")
        record = _RelabelRecord(self._cols["index"][pos], bool(blocked), float(seconds), time.time(), reviewer)
        self._store(record)
        return self._relabels[-1]

    def _store(self, record: _LabelRecord | _RelabelRecord) -> None:
        """Write one record with one OS write (the file ends on a record boundary even if it fails), then index it."""
        encoded = _encode(record)
        offset, data = self._end, memoryview(encoded)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            os.ftruncate(self._fd, offset)
            raise LabelStoreError(f"{self.file}: could not write ({e}); nothing was stored, "
                                  "free disk space and retry") from e
        self._add(record, offset)
        self._keep(offset, len(encoded))
        self._unsynced += 1
        if self.fsync_every and self._unsynced >= self.fsync_every:
            self.flush()

    def flush(self) -> None:
        """fsync the data file, so that stored labels survive a machine crash too."""
        if self.writable and self._fd is not None and self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0

    def _open_fd(self, what: str) -> int:
        if self._fd is None:
            raise LabelStoreError(f"cannot {what}: the label store {self.file} is closed")
        return self._fd

    def _writable(self, what: str) -> None:
        self._open_fd(what)
        if not self.writable:
            raise LabelStoreError(f"cannot {what}: {self.file} was opened read-only; use "
                                  "LabelStore.open_or_create or open(..., writable=True)")

    def _check(self, label: Label) -> None:
        """Raise a LabelStoreError naming the first field of ``label`` this store cannot hold."""
        if not isinstance(label, Label):
            raise LabelStoreError(f"cannot append to {self.file}: expected a Label, got {type(label).__name__}")
        frame = label.frame
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != self.frame_shape:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise LabelStoreError(f"cannot append to {self.file}: label.frame is {got}; this store holds "
                                  f"uint8 RGB frames of shape {self.frame_shape}")
        fault = self._fault("label", vars(label), _LABEL_FIELDS)
        if fault:
            raise LabelStoreError(f"cannot append to {self.file}: {fault}")

    def _fault(self, prefix: str, values: Mapping[str, Any], kinds: Mapping[str, Any]) -> str | None:
        """``prefix.name = value (type); expected ...`` for the first of ``values`` that is not of its kind."""
        n_actions = len(self.action_names)
        for name, kind in kinds.items():
            value = values[name]
            boolean = isinstance(value, (bool, np.bool_))
            integer = isinstance(value, (int, np.integer)) and not boolean
            real = isinstance(value, (int, float, np.integer, np.floating)) and not boolean
            if kind == "action":
                ok, want = integer and 0 <= value < n_actions, f"an action in 0..{n_actions - 1} ({self.game})"
            elif kind == "executed":
                ok, want = integer and HOLD <= value < n_actions, f"an action in 0..{n_actions - 1}, or {HOLD} (held)"
            elif kind is bool:
                ok, want = boolean, "a bool"
            elif kind is int:
                ok, want = integer and 0 <= value < _I64, "an integer >= 0"
            elif kind is str:
                ok, want = isinstance(value, str) and 0 < len(value.encode()) < 2**16, "a non-empty string"
            elif kind is float:
                ok, want = real and math.isfinite(value) and value >= 0, "a finite number of seconds >= 0"
            else:
                ok, want = real and not math.isinf(value), "a finite number, or NaN when there is no score"
            if not ok:
                return f"{prefix}.{name} = {value!r} ({type(value).__name__}); expected {want}"
        return None

    # ----- reading -----

    def __len__(self) -> int:
        return len(self._cols["index"])

    def __iter__(self) -> Iterator[Label]:
        return self.labels()

    def __getitem__(self, index: int) -> Label:
        return self.label(index)

    def _position(self, index: int) -> int:
        n = len(self)
        if not isinstance(index, (int, np.integer)) or not -n <= index < n:
            raise IndexError(f"label index {index!r} out of range: {self.file} holds {n} labels")
        return int(index) % n

    def _record(self, pos: int) -> _LabelRecord:
        offset = self._cols["offset"][pos]
        read = self._read_record(offset, self._end)
        if read.reason is not None:
            raise LabelStoreError(f"{self.file}: label {pos} at byte offset {offset}: {read.reason} since the store "
                                  "was opened; reopen it with LabelStore.open(path, recover=True)")
        return read.record

    def _frame(self, pos: int, record: _LabelRecord) -> np.ndarray:
        try:
            return np.frombuffer(_inflate(record.frame, self._frame_bytes), np.uint8).reshape(self.frame_shape)
        except ValueError as e:
            raise LabelStoreError(f"{self.file}: the frame of label {pos} (byte offset "
                                  f"{self._cols['offset'][pos]}) cannot be decoded ({e})") from None

    def label(self, index: int, original: bool = False) -> Label:
        """Label ``index`` with its latest relabel applied (``original=True``: as first stored).

        Its frame is a read-only array decoded from disk now.
        """
        pos = self._position(index)
        record = self._record(pos)
        relabel = None if original else self._latest.get(pos)
        return Label(self._frame(pos, record), record.proposed_action, record.executed_action,
                     record.blocked if relabel is None else relabel.blocked, record.catastrophe, record.episode,
                     record.step, record.overseer, record.seconds, record.score)

    def labels(self, original: bool = False) -> Iterator[Label]:
        """Every label in order, decoded one at a time (``original=True``: ignoring relabels)."""
        for pos in range(len(self)):
            yield self.label(pos, original)

    def frames(self, indices: Iterable[int]) -> np.ndarray:
        """The frames of labels ``indices`` (N x H x W x 3 uint8), decoded now from disk."""
        indices = list(indices)
        out = np.empty((len(indices), *self.frame_shape), np.uint8)
        for k, index in enumerate(indices):
            pos = self._position(index)
            out[k] = self._frame(pos, self._record(pos))
        return out

    def relabels(self) -> list[Relabel]:
        """Every relabel in the order it was made."""
        return list(self._relabels)

    def arrays(self) -> dict[str, np.ndarray]:
        """The non-frame fields of all labels as arrays (``blocked`` with relabels applied;
        ``blocked_original`` and ``relabeled`` beside it)."""
        out = {name: np.frombuffer(column, _DTYPES[column.typecode]).copy()
               for name, column in self._cols.items() if name not in ("offset", "index")}
        for name in ("blocked", "catastrophe"):
            out[name] = out[name].astype(bool)
        out["overseer"] = np.array(self._overseers + [""], dtype=str)[out["overseer"]]
        out["blocked_original"] = out["blocked"].copy()
        out["relabeled"] = np.zeros(len(self), bool)
        for pos, relabel in self._latest.items():
            out["blocked"][pos] = relabel.blocked
            out["relabeled"][pos] = True
        return out

    def next_episode(self) -> int:
        """The first episode id after every stored label's (to continue a store's numbering on resume)."""
        return int(self.arrays()["episode"].max()) + 1 if len(self) else 0

    def digest(self) -> str:
        """sha256 (hex) of the data file up to the end of its last valid record: training data provenance."""
        sha, fd = hashlib.sha256(), self._open_fd("digest")
        for offset in range(0, self._end, 1 << 20):
            sha.update(os.pread(fd, min(1 << 20, self._end - offset), offset))
        return sha.hexdigest()

    def summary(self) -> dict[str, Any]:
        """Counts for reports: labels, blocks, catastrophes, episodes, overseers, human seconds, bytes."""
        a = self.arrays()
        size = os.fstat(self._open_fd("summarize")).st_size
        return {
            "path": str(self.path),
            "game": self.game,
            "format_version": FORMAT_VERSION,
            "frame_shape": list(self.frame_shape),
            "labels": len(self),
            "blocks": int(a["blocked"].sum()),
            "catastrophes": int(a["catastrophe"].sum()),
            "episodes": int(np.unique(a["episode"]).size),
            "overseers": dict(Counter(a["overseer"].tolist())),
            "human_seconds": float(a["seconds"].sum()),
            "relabels": len(self._relabels),
            "relabeled_labels": len(self._latest),
            "review_seconds": float(sum(r.seconds for r in self._relabels)),
            "file_bytes": size,
            "bytes_per_label": size / len(self) if len(self) else None,
            "damaged_regions": len(self.damage),
        }

    def damage_report(self) -> dict[str, Any]:
        """What opening found: the valid records, and each damaged stretch with its byte offset, length and reason."""
        size = os.fstat(self._open_fd("report on")).st_size
        damage = [{"record": d.record, "offset": d.offset,
                   "bytes": (size if d.resumes_at is None else d.resumes_at) - d.offset, "reason": d.reason,
                   "resumes_at": d.resumes_at, "unfinished_write": d.unfinished} for d in self.damage]
        return {"path": str(self.path), "sound": not damage, "records_ok": len(self) + len(self._relabels),
                "labels": len(self), "relabels": len(self._relabels), "file_bytes": size,
                "damaged_stretches": len(damage), "damaged_bytes": sum(d["bytes"] for d in damage), "damage": damage}

    def copy_to(self, path: str | os.PathLike[str], fsync_every: int = 0) -> LabelStore:
        """A new store at ``path``, open for appending, with this store's header and valid records byte for byte
        (of a store opened with ``recover=True``: every record that survived the damage)."""
        fd = self._open_fd("copy")

        def chunks() -> Iterator[bytes]:
            yield os.pread(fd, self._start, 0)
            for start, end in self._spans:
                for offset in range(start, end, 1 << 20):
                    yield os.pread(fd, min(1 << 20, end - offset), offset)

        self._write_new(_store_file(path), chunks())
        return LabelStore.open(path, self.game, writable=True, fsync_every=fsync_every)

    def close(self) -> None:
        """fsync (when writable) and close the file; safe to call twice."""
        if self._fd is not None:
            try:
                self.flush()
            finally:
                os.close(self._fd)  # also releases the append lock
                self._fd = None

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r}, game={self.game!r}, labels={len(self)})"
