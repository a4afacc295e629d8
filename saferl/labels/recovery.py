"""Recovery of a damaged label store: reading a record or why it is invalid, finding the next valid record,
the message and report on damage, and moving an unfinished write at the end aside.

A file that ends inside a record (fewer bytes than its length field says: a write cut short, never acknowledged)
is moved aside when the store is opened for appending; any other invalid record, the last one included, is
damage, which ``saferl labels DIR --check`` reports and ``saferl labels DIR --salvage OUT`` repairs.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from saferl.labels.format import FILE_NAME, LENGTH, RECORD, RECORD_SYNC, LabelRecord, RelabelRecord, decode_record

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


class RecordRead(NamedTuple):
    """What reading the record at an offset found: why it is invalid (or None), its length, the record."""

    reason: str | None
    length: int = 0
    record: LabelRecord | RelabelRecord | None = None
    unfinished: bool = False


def read_record(fd: int, offset: int, size: int, max_payload: int) -> RecordRead:
    """The record at ``offset`` of a store file ``fd`` of ``size`` bytes, or why there is none.

    :param max_payload: the longest payload a record of this store can have (longer: damage).
    """
    head = os.pread(fd, RECORD.size, offset)
    if len(head) < RECORD.size:
        prefix = head[:len(RECORD_SYNC)] == RECORD_SYNC[:len(head)]
        return RecordRead(f"incomplete record header ({len(head)} of {RECORD.size} bytes)" if prefix
                          else "no record marker", unfinished=prefix)
    sync, n, crc = RECORD.unpack(head)
    if sync != RECORD_SYNC:
        return RecordRead("no record marker")
    if n > max_payload:
        return RecordRead(f"impossible record length {n}")
    present = min(n, size - offset - RECORD.size)
    payload = os.pread(fd, present, offset + RECORD.size)
    if present < n:
        if zlib.crc32(payload, zlib.crc32(LENGTH.pack(len(payload)))) == crc:
            return RecordRead(f"the length field says {n} bytes but the {len(payload)} present are the whole record "
                              "(its CRC matches): the length changed after writing")
        return RecordRead(f"incomplete record ({size - offset} of {RECORD.size + n} bytes present)", unfinished=True)
    if len(payload) != n or zlib.crc32(payload, zlib.crc32(head[4:8])) != crc:
        return RecordRead("CRC mismatch (the bytes changed after writing)")
    try:
        return RecordRead(None, RECORD.size + n, decode_record(payload))
    except (ValueError, struct.error) as e:
        return RecordRead(f"unreadable record ({e})")


def next_valid(fd: int, start: int, size: int, max_payload: int) -> int | None:
    """The offset of the first valid record at or after ``start``, if any."""
    chunk = 1 << 20
    for base in range(start, size, chunk):
        data = os.pread(fd, chunk + len(RECORD_SYNC) - 1, base)
        k = data.find(RECORD_SYNC)
        while k != -1:
            if read_record(fd, base + k, size, max_payload).reason is None:
                return base + k
            k = data.find(RECORD_SYNC, k + 1)
    return None


def damage_message(file: Path, damage: Damage, size: int) -> str:
    """The one-line error for a store whose first damage is ``damage``, naming how to check and salvage it."""
    path = file.parent
    where = f"{file}: record {damage.record} at byte offset {damage.offset}: {damage.reason}"
    repair = (f"saferl labels {path} --check reports every damaged record, and saferl labels {path} "
              "--salvage NEW_DIR copies every valid one to a new store (keep this file as a backup)")
    if damage.unfinished:
        return (f"{where}; the last {size - damage.offset} bytes hold no complete record (a write cut short, so "
                f"never acknowledged). Appending to the store (saferl oversee --out {path}, or "
                f"LabelStore.open_or_create) moves them to a {FILE_NAME}.partial-{damage.offset} side file; "
                f"or {repair}")
    if damage.resumes_at is None:
        return (f"{where}; the last record is all there but its bytes changed after writing (damage, not a write "
                f"cut short), so the file was left unchanged: {repair}")
    return (f"{where}; valid records follow at byte offset {damage.resumes_at}, so the file is damaged "
            f"in the middle and was left unchanged: {repair}")


def move_tail(fd: int, file: Path, damage: Damage, size: int) -> Path:
    """Move the invalid bytes at the end (an unfinished write) to a side file and truncate, losing nothing;
    the side file."""
    side = file.with_name(f"{FILE_NAME}.partial-{damage.offset}")
    for n in range(1, 1000):
        if not side.exists():
            break
        side = file.with_name(f"{FILE_NAME}.partial-{damage.offset}-{n}")
    with open(side, "xb") as out:
        out.write(os.pread(fd, size - damage.offset, damage.offset))
        out.flush()
        os.fsync(out.fileno())
    os.ftruncate(fd, damage.offset)
    os.fsync(fd)
    _log.warning("%s: moved the %d bytes after the last valid record (byte offset %d: %s) to %s; appending "
                 "continues there", file, size - damage.offset, damage.offset, damage.reason, side)
    return side


def damage_report(path: Path, damage: list[Damage], size: int, labels: int, relabels: int) -> dict[str, Any]:
    """What opening found: the valid records (``labels`` and ``relabels``), and each damaged stretch with its byte
    offset, length and reason, in a file of ``size`` bytes."""
    stretches = [{"record": d.record, "offset": d.offset,
                  "bytes": (size if d.resumes_at is None else d.resumes_at) - d.offset, "reason": d.reason,
                  "resumes_at": d.resumes_at, "unfinished_write": d.unfinished} for d in damage]
    return {"path": str(path), "sound": not stretches, "records_ok": labels + relabels,
            "labels": labels, "relabels": relabels, "file_bytes": size, "damaged_stretches": len(stretches),
            "damaged_bytes": sum(d["bytes"] for d in stretches), "damage": stretches}
