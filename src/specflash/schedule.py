"""The learning-rate shape every training loop here uses: draft training and world-target training."""

from __future__ import annotations

import math


def warmup_cosine(step: int, steps: int, warmup: int, floor: float = 0.1) -> float:
    """Factor on the peak rate: linear warm-up over `warmup` steps, then cosine down to `floor` at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
