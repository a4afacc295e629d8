"""The label store's error (:class:`LabelStoreError`), which callers catch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from saferl.errors import SaferlError


class LabelStoreError(SaferlError):
    """A label store that cannot be used as asked: the message names the file and how to fix it."""


@contextmanager
def as_store_error() -> Iterator[None]:
    """Re-raise a plain SaferlError (from saferl.schema) as a LabelStoreError, which callers catch."""
    try:
        yield
    except LabelStoreError:
        raise
    except SaferlError as err:
        raise LabelStoreError(str(err)) from None
