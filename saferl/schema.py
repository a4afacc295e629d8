"""Checking what is read from disk before it is trusted: a pydantic model per file, one clear error per fault.

Every JSON file saferl reads back (Blocker and ensemble metadata, checkpoint state, agent metadata, label-store
headers, experiment configs) is parsed by :func:`read_json` (bounded in size and depth) and checked by
:func:`validate` against a model whose fields carry their types and bounds: numbers finite, sizes sane,
names from a known set. A fault becomes one :class:`~saferl.errors.SaferlError` naming the file, the field
and the fix.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from saferl.errors import SaferlError

MAX_JSON_BYTES = 16 * 2**20  # metadata is kilobytes; a bigger file is not saferl's
MAX_JSON_DEPTH = 32

Model = TypeVar("Model")


class Strict(BaseModel):
    """A record read from disk: no unknown fields' surprises in the checked part, no NaN or infinity."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True, strict=True)


def _depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests (stops counting past ``limit``)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def parse_json(text: str | bytes, source: str) -> Any:
    """JSON ``text``, bounded in size and nesting; ``source`` names it in the error. NaN may stand in a figure
    (a metric with no data); a model's :class:`Strict` fields refuse it where a value is used."""
    if len(text) > MAX_JSON_BYTES:
        raise SaferlError(f"{source} is {len(text):,} bytes, more than saferl's metadata ever is "
                          f"({MAX_JSON_BYTES:,}): it is not a saferl file; restore or recreate it")
    try:
        data = json.loads(text)
    except RecursionError:
        raise SaferlError(f"{source} nests too deeply to be saferl's: restore or recreate it") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise SaferlError(f"{source} is not valid JSON ({err}): restore or recreate it") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise SaferlError(f"{source} nests more than {MAX_JSON_DEPTH} levels deep: it is not a saferl file")
    return data


def read_json(path: str | os.PathLike[str], missing: str | None = None) -> Any:
    """The JSON in ``path``, bounded as :func:`parse_json`; ``missing`` is the message when there is no file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise SaferlError(f"{path} is {path.stat().st_size:,} bytes, more than saferl's metadata ever is: "
                              "it is not a saferl file; restore or recreate it")
        text = path.read_bytes()
    except FileNotFoundError:
        raise SaferlError(missing or f"{path} is missing") from None
    except IsADirectoryError:
        raise SaferlError(f"{path} is a folder, not a JSON file") from None
    except OSError as err:
        raise SaferlError(f"cannot read {path}: {err.strerror or err}") from None
    return parse_json(text, str(path))


def describe_error(err: ValidationError) -> str:
    """The first fault of ``err`` in one line: ``field.path: message (got value)``."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    got = first.get("input")
    shown = repr(got) if isinstance(got, (int, float, str, bool)) or got is None else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg'].lower()} (got {shown}){more}"


@functools.cache
def _adapter(model: type) -> TypeAdapter:
    return TypeAdapter(model)


def validate(model: type[Model], data: Any, source: str, fix: str) -> Model:
    """``data`` checked against ``model`` (a pydantic model or a dataclass, whose ``__post_init__`` then runs);
    ``source`` names the file and ``fix`` says what to do on a fault."""
    try:
        return _adapter(model).validate_python(data)
    except ValidationError as err:
        raise SaferlError(f"{source}: {describe_error(err)}; {fix}") from None


def comma_separated(text: str) -> list[str]:
    """The items of a comma-separated value (``--conditions hirl,none``), stripped, empty ones dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def finite(value: float, name: str) -> float:
    """``value`` when it is a finite number, else a :class:`SaferlError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SaferlError(f"{name} must be a finite number, not {value!r}")
    return float(value)


__all__ = ["MAX_JSON_BYTES", "Strict", "comma_separated", "describe_error", "finite", "parse_json", "read_json", "validate"]
