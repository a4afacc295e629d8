"""The label store (:class:`LabelStore`): an append-only, crash-safe dataset of overseer decisions on disk.

Opening, creating and appending (one writer at a time, under an exclusive ``flock``), relabels, and the queries
(labels, frames, arrays, summary). Readers keep only an index of offsets and small fields in memory and decode
frames on demand. A relabel ("R") never rewrites a label: readers apply the latest relabel of each label and can
still read the original. The bytes on disk are :mod:`saferl.labels.format`; damage is
:mod:`saferl.labels.recovery`'s.

The header is checked against :class:`~saferl.labels.format.StoreHeader` before anything is sized from it.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import math
import os
import stat
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import saferl
from saferl.labels.errors import LabelStoreError, as_store_error
from saferl.labels.format import (
    ATARI_FRAME_SHAPE,
    FILE_NAME,
    FORMAT_VERSION,
    FRAME_CODEC,
    LABEL,
    LABEL_FIELDS,
    RELABEL_FIELDS,
    ZLIB_LEVEL,
    Label,
    LabelRecord,
    Relabel,
    RelabelRecord,
    StoreHeader,
    encode_record,
    field_fault,
    header_bytes,
    inflate,
    read_header,
    store_file,
)
from saferl.labels.recovery import Damage, damage_message, damage_report, move_tail, next_valid, read_record
from saferl.schema import validate

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
        self.header, checked, self._start = read_header(fd, file)
        self.game: str = checked.game
        self.action_names: list[str] = list(checked.action_names)
        self.frame_shape: tuple[int, ...] = tuple(checked.frame_shape)
        self._end = self._start
        self._frame_bytes = math.prod(self.frame_shape)
        self._max_payload = LABEL.size + 2**16 + self._frame_bytes + self._frame_bytes // 100 + 1024
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
        file = store_file(path)
        header = {"format": "saferl-labels", "game": game, "action_names": [str(a) for a in action_names],
                  "frame_shape": [int(n) for n in frame_shape], "frame_codec": FRAME_CODEC,
                  "created": datetime.now(UTC).isoformat(timespec="seconds"),
                  "saferl_version": saferl.__version__}
        with as_store_error():
            validate(StoreHeader, header, f"cannot create a label store at {file}",
                     "give the game, its action names and the RGB frame shape (H, W, 3)")
        cls._write_new(file, [header_bytes(header)])
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
        file = store_file(path)
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
        file = store_file(path)
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

    # ----- scanning and the index -----

    def _verify(self, record: LabelRecord | RelabelRecord) -> str | None:
        """Why a CRC-valid record does not fit the header (a frame that does not inflate to it, a field out
        of range), or None."""
        if isinstance(record, RelabelRecord):
            return self._fault("relabel", record._asdict(), RELABEL_FIELDS | {"time": float})
        try:
            inflate(record.frame, self._frame_bytes)
        except ValueError as e:
            return f"the frame does not decode to {self.frame_shape} uint8 ({e})"
        return self._fault("label", record._asdict(), LABEL_FIELDS)

    def _add(self, record: LabelRecord | RelabelRecord, offset: int) -> str | None:
        """Add a record to the in-memory index; the reason when it does not fit the store."""
        seqs = self._cols["index"]
        if isinstance(record, RelabelRecord):
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
            read = read_record(self._fd, offset, size, self._max_payload)
            reason = read.reason
            if reason is None and verify:
                reason = self._verify(read.record)
            if reason is None:
                reason = self._add(read.record, offset)
            if reason is None:
                self._keep(offset, read.length)
                offset += read.length
            else:
                resumes = next_valid(self._fd, offset + 1, size, self._max_payload)
                self.damage.append(Damage(record, offset, reason, resumes, read.unfinished and resumes is None))
                if resumes is None or not recover:
                    break
                offset = resumes
            record += 1
        if not self.damage or recover:
            return
        first = self.damage[0]
        if first.unfinished and self.writable:
            self.moved_tail = move_tail(self._fd, self.file, first, size)
            self.damage.clear()
            return
        raise LabelStoreError(damage_message(self.file, first, size))

    # ----- writing -----

    def append(self, label: Label) -> int:
        """Store ``label`` durably (it survives the writer being killed once this returns); its index.

        The record numbers labels on from the last stored one (a salvaged store may skip the numbers of
        labels it lost); indices given and returned are positions, 0 to ``len(store) - 1``.
        """
        self._writable("append")
        self._check(label)
        seqs = self._cols["index"]
        record = LabelRecord(seqs[-1] + 1 if seqs else 0, int(label.proposed_action), int(label.executed_action),
                              bool(label.blocked), bool(label.catastrophe), int(label.episode), int(label.step),
                              float(label.seconds), float(label.score), label.overseer,
                              zlib.compress(label.frame.tobytes(), ZLIB_LEVEL))
        self._store(record)
        return len(self) - 1

    def relabel(self, index: int, blocked: bool, reviewer: str, seconds: float = 0.0) -> Relabel:
        """Record a reviewer's block decision for label ``index``; the original label stays readable."""
        self._writable("relabel")
        pos = self._position(index)
        fault = self._fault("relabel", {"blocked": blocked, "reviewer": reviewer, "seconds": seconds}, RELABEL_FIELDS)
        if fault:
            raise LabelStoreError(f"cannot relabel in {self.file}: {fault}")
        record = RelabelRecord(self._cols["index"][pos], bool(blocked), float(seconds), time.time(), reviewer)
        self._store(record)
        return self._relabels[-1]

    def _store(self, record: LabelRecord | RelabelRecord) -> None:
        """Write one record with one OS write (the file ends on a record boundary even if it fails), then index it."""
        encoded = encode_record(record)
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
        fault = self._fault("label", vars(label), LABEL_FIELDS)
        if fault:
            raise LabelStoreError(f"cannot append to {self.file}: {fault}")

    def _fault(self, prefix: str, values: Mapping[str, Any], kinds: Mapping[str, Any]) -> str | None:
        """``prefix.name = value (type); expected ...`` for the first of ``values`` that is not of its kind."""
        return field_fault(prefix, values, kinds, self.action_names, self.game)

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

    def _record(self, pos: int) -> LabelRecord:
        offset = self._cols["offset"][pos]
        read = read_record(self._open_fd("read"), offset, self._end, self._max_payload)
        if read.reason is not None:
            raise LabelStoreError(f"{self.file}: label {pos} at byte offset {offset}: {read.reason} since the store "
                                  "was opened; reopen it with LabelStore.open(path, recover=True)")
        return read.record

    def _frame(self, pos: int, record: LabelRecord) -> np.ndarray:
        try:
            return np.frombuffer(inflate(record.frame, self._frame_bytes), np.uint8).reshape(self.frame_shape)
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
        return damage_report(self.path, self.damage, size, len(self), len(self._relabels))

    def copy_to(self, path: str | os.PathLike[str], fsync_every: int = 0) -> LabelStore:
        """A new store at ``path``, open for appending, with this store's header and valid records byte for byte
        (of a store opened with ``recover=True``: every record that survived the damage)."""
        fd = self._open_fd("copy")

        def chunks() -> Iterator[bytes]:
            yield os.pread(fd, self._start, 0)
            for start, end in self._spans:
                for offset in range(start, end, 1 << 20):
                    yield os.pread(fd, min(1 << 20, end - offset), offset)

        self._write_new(store_file(path), chunks())
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
