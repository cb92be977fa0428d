"""The learning-rate shape every world training stage uses."""

from __future__ import annotations

import math


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """Factor on the peak rate: linear warm-up over `warmup` steps, then cosine down to 10% at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
