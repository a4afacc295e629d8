"""Where torch runs: ``auto`` means cuda when present, else the CPU."""

from __future__ import annotations

import torch

from saferl.errors import SaferlError


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` means (``auto``: cuda when present, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SaferlError(f"unknown device {name!r} (--device): use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SaferlError(f"--device {name}: no CUDA device is available here; use --device auto or cpu")
    return device
