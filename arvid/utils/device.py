"""Device selection with clear errors."""

from __future__ import annotations

import torch

from arvid.errors import ArvidError


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """'auto' or None: the GPU when there is one, else the CPU. Otherwise the named device."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ArvidError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if device.type not in ("cpu", "cuda"):
        raise ArvidError(f"device {name!r} cannot run arvid: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArvidError(f"device {name!r} asked for, but this machine has no CUDA GPU: use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ArvidError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
    return device
