"""The label store's on-disk format: the header, the record codec with its CRC, the frame codec, and what each
stored field must be.

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
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, field_validator

import saferl
from saferl.env.ground_truth import HOLD
from saferl.labels.errors import LabelStoreError, as_store_error
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

HEADER = struct.Struct("<8sHII")  # magic, version, json length, crc32(json)
RECORD = struct.Struct("<4sII")  # sync, payload length, crc32(length bytes + payload)
LENGTH = struct.Struct("<I")
LABEL = struct.Struct("<cQiiBqqddH")
RELABEL = struct.Struct("<cQBddH")
_I64 = 2**63

# What each stored field must be (the kinds of field_fault), checked on append and by --check.
LABEL_FIELDS = {"proposed_action": "action", "executed_action": "executed", "blocked": bool, "catastrophe": bool,
                "episode": int, "step": int, "overseer": str, "seconds": float, "score": "score"}
RELABEL_FIELDS = {"blocked": bool, "reviewer": str, "seconds": float}


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


class LabelRecord(NamedTuple):
    """A label as stored: its fields, and its frame still compressed."""

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


class RelabelRecord(NamedTuple):
    """A relabel as stored."""

    index: int
    blocked: bool
    seconds: float
    time: float
    reviewer: str


def encode_record(record: LabelRecord | RelabelRecord) -> bytes:
    """The framed bytes of one record (sync, length, CRC, payload)."""
    if isinstance(record, LabelRecord):
        who = record.overseer.encode()
        flags = int(record.blocked) | int(record.catastrophe) << 1
        head = LABEL.pack(b"L", record.index, record.proposed_action, record.executed_action, flags,
                           record.episode, record.step, record.seconds, record.score, len(who))
        payload = head + who + record.frame
    else:
        who = record.reviewer.encode()
        payload = RELABEL.pack(b"R", record.index, int(record.blocked), record.seconds, record.time, len(who)) + who
    length = LENGTH.pack(len(payload))
    return RECORD.pack(RECORD_SYNC, len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


def decode_record(payload: bytes) -> LabelRecord | RelabelRecord:
    """The record in a CRC-checked payload; ValueError or struct.error when it makes no sense."""
    kind = payload[:1]
    if kind == b"L":
        _, index, proposed, executed, flags, episode, step, seconds, score, n = LABEL.unpack_from(payload)
        who = payload[LABEL.size:LABEL.size + n]
        if len(who) != n or flags > 3:
            raise ValueError("label fields do not fit the record")
        return LabelRecord(index, proposed, executed, bool(flags & 1), bool(flags & 2), episode, step,
                            seconds, score, who.decode(), payload[LABEL.size + n:])
    if kind == b"R":
        _, index, blocked, seconds, when, n = RELABEL.unpack_from(payload)
        if len(payload) != RELABEL.size + n or blocked > 1:
            raise ValueError("relabel fields do not fit the record")
        return RelabelRecord(index, bool(blocked), seconds, when, payload[RELABEL.size:].decode())
    raise ValueError(f"unknown record kind {kind!r}")


def inflate(data: bytes, size: int) -> bytes:
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


def store_file(path: str | os.PathLike[str]) -> Path:
    """The data file of the store at ``path`` (a directory, or the data file itself)."""
    path = Path(path)
    return path if path.name == FILE_NAME and path.is_file() else path / FILE_NAME


def header_bytes(header: dict[str, Any]) -> bytes:
    """The framed bytes of a store's JSON header (magic, version, length, CRC, JSON)."""
    body = json.dumps(header, sort_keys=True).encode()
    return HEADER.pack(MAGIC, FORMAT_VERSION, len(body), zlib.crc32(body)) + body


def read_header(fd: int, file: Path) -> tuple[dict[str, Any], StoreHeader, int]:
    """The header of the store file open as ``fd``: as written, as checked, and the byte offset of the first record.

    :raises LabelStoreError: not a store, another format version, or a damaged header.
    """
    head = os.pread(fd, HEADER.size, 0)
    if len(head) < HEADER.size or head[:len(MAGIC)] != MAGIC:
        raise LabelStoreError(f"{file} is not a saferl label store (no {MAGIC!r} magic bytes): "
                              "check the path")
    _, version, n, crc = HEADER.unpack(head)
    if version != FORMAT_VERSION:
        raise LabelStoreError(f"{file} has label format version {version}; this saferl "
                              f"({saferl.__version__}) reads version {FORMAT_VERSION}: use a matching saferl")
    damaged = f"{file}: the header (bytes 0..{HEADER.size + n}) is damaged"
    if n > MAX_JSON_BYTES:
        raise LabelStoreError(f"{damaged} (it claims {n:,} bytes of JSON); restore the file from a backup")
    body = os.pread(fd, n, HEADER.size)
    if len(body) != n or zlib.crc32(body) != crc:
        raise LabelStoreError(f"{damaged} (length or CRC mismatch); restore the file from a backup")
    with as_store_error():
        header = parse_json(body, f"{file} header")
        checked = validate(StoreHeader, header, f"{file} header", "restore the file from a backup")
    return header, checked, HEADER.size + n


def field_fault(prefix: str, values: Mapping[str, Any], kinds: Mapping[str, Any], action_names: list[str],
                game: str) -> str | None:
    """``prefix.name = value (type); expected ...`` for the first of ``values`` that is not of its kind
    (:data:`LABEL_FIELDS`, :data:`RELABEL_FIELDS`) in a store of ``game`` with ``action_names``, or None."""
    n_actions = len(action_names)
    for name, kind in kinds.items():
        value = values[name]
        boolean = isinstance(value, (bool, np.bool_))
        integer = isinstance(value, (int, np.integer)) and not boolean
        real = isinstance(value, (int, float, np.integer, np.floating)) and not boolean
        if kind == "action":
            ok, want = integer and 0 <= value < n_actions, f"an action in 0..{n_actions - 1} ({game})"
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

