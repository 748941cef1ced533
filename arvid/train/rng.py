"""Random-number-generator state as JSON (no pickle), so `--resume` draws the same numbers.

Captured per process: torch's CPU generator, the CUDA generator of the process's device, Python's
`random` and NumPy's legacy global generator. Byte states are base64 text; the rest are lists.
"""

from __future__ import annotations

import base64
import random

import numpy as np
import torch


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def capture(device: torch.device) -> dict:
    """The current RNG states of this process as a JSON-able dict."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "torch": _b64(torch.get_rng_state()),
        "python": [version, list(mt), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "cuda": None,
    }
    if device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def restore(state: dict, device: torch.device) -> None:
    """Set the RNG states of this process from `capture`'s dict."""
    torch.set_rng_state(_unb64(state["torch"]))
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


def seed_all(seed: int) -> None:
    """Seed torch (CPU and every GPU), Python's `random` and NumPy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
