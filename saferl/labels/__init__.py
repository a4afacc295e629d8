"""The label store: the overseer's decisions on disk, append-only and crash-safe.

* ``format``: the on-disk format (header, record codec with CRC, frame codec, the fields' kinds), :class:`Label`
  and :class:`Relabel`;
* ``recovery``: reading records of a possibly damaged file, damage reports, moving an unfinished write aside;
* ``store``: :class:`LabelStore` (create, open, append, relabel, queries);
* ``errors``: :class:`LabelStoreError`.
"""

from saferl.labels.errors import LabelStoreError
from saferl.labels.format import ATARI_FRAME_SHAPE, FILE_NAME, FORMAT_VERSION, Label, Relabel, StoreHeader
from saferl.labels.recovery import Damage
from saferl.labels.store import LabelStore

__all__ = ["ATARI_FRAME_SHAPE", "FILE_NAME", "FORMAT_VERSION", "Damage", "Label", "LabelStore", "LabelStoreError",
           "Relabel", "StoreHeader"]
