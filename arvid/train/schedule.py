"""Learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate for the 0-based `step` of a `total`-step run.

    Warmup rises linearly over `warmup` steps (1/warmup, 2/warmup, ..., 1), then a half cosine
    falls from 1 to `min_ratio`, reached on the last step (`total - 1`) and held after it.
    """
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
