"""Writing files so that a crash leaves the old file or the new one, never half of one; reading JSON metadata
with one clear error."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from saferl.errors import SaferlError


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends without error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path: str | os.PathLike[str], data: Any, indent: int = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically (values JSON cannot hold are written as strings)."""
    write_atomic(path, json.dumps(data, indent=indent, default=str))


def read_format_json(path: str | os.PathLike[str], fmt: str, version: int, what: str, missing: str) -> dict[str, Any]:
    """The JSON object in ``path`` (bounded in size and nesting), checked to be of format ``fmt`` at ``version``.

    :param what: what the file describes, for messages (``Blocker``, ``A3C agent``).
    :param missing: the message when the file does not exist (say how to make one).
    """
    from saferl.schema import read_json

    data = read_json(path, missing)
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise SaferlError(f"{path} is not a saferl {what}'s metadata (format is not {fmt!r})")
    if data.get("format_version") != version:
        raise SaferlError(f"{path} has {what} format version {data.get('format_version')!r}; this saferl reads "
                          f"version {version}: use a matching saferl or retrain")
    return data


def _canonical_sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def with_digest(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as JSON will hold it, plus ``digest``: the sha256 of every other field, so that an edit to any
    field of the written file shows (:func:`check_digest`)."""
    plain = json.loads(json.dumps(data, default=str))
    plain.pop("digest", None)
    return {**plain, "digest": _canonical_sha256(plain)}


def check_digest(data: dict[str, Any], path: str | os.PathLike[str], fix: str) -> None:
    """Refuse metadata read from ``path`` whose fields do not match its ``digest`` (:func:`with_digest`)."""
    fields = {key: value for key, value in data.items() if key != "digest"}
    if data.get("digest") != _canonical_sha256(fields):
        raise SaferlError(f"{path} does not match its digest: a field was edited or damaged after it was written, "
                          f"and it was not used; {fix}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_safetensors(weights: str | os.PathLike[str], sha256: str | None, what: str) -> dict[str, Any]:
    """The tensors in ``weights`` (safetensors: nothing in it can run code), after checking the file is the one
    its metadata describes by ``sha256``; ``what`` names the thing for messages (``the Blocker in DIR``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = Path(weights)
    if not weights.is_file():
        raise SaferlError(f"{weights} is missing: {what} is incomplete; retrain it or restore the file")
    if sha256_file(weights) != sha256:
        raise SaferlError(f"{weights} is not the file its metadata describes (sha256 differs): it was replaced or "
                          f"damaged, and was not loaded; retrain {what} or restore the file")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise SaferlError(f"{weights} is not a safetensors file ({err}); it was not loaded") from None
    damaged = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if damaged:
        raise SaferlError(f"{weights} holds NaN or infinite values (in {', '.join(damaged[:3])}): {what} is damaged; "
                          "retrain it or restore the file")
    return tensors



#: Folders :func:`writable_dir` created in this process, outermost first.
_created: list[Path] = []


def writable_dir(path: str | os.PathLike[str], argument: str) -> Path:
    """Create ``path`` if needed and check that files can be written in it (before any work starts); ``argument``
    names it in the error (``--out``)."""
    folder = Path(path)
    try:
        missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        _created.extend(reversed(missing))
        probe = folder / ".saferl-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SaferlError(f"cannot write to {argument} {folder}: {err.strerror or err}; choose a writable folder") from None
    return folder


@contextmanager
def removing_created_folders_on_error() -> Iterator[None]:
    """Folders :func:`writable_dir` creates within the block are removed again, when still empty, if the block
    raises: a command that fails leaves no folder behind."""
    start = len(_created)
    try:
        yield
    except BaseException:
        for folder in reversed(_created[start:]):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    finally:
        del _created[start:]
