"""The semi-autoregressive head (FLASH.md section 3): k predicted features per position.

Slot 0 is the decoder output itself (the EAGLE next-feature prediction); slot i >= 1 adds a small
residual MLP of its own, predicting the feature i+1 steps ahead from the same prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from specflash.draft.layers import RMSNorm


class SlotHead(nn.Module):
    def __init__(self, dim: int, k: int, eps: float) -> None:
        super().__init__()
        hidden = dim // 2
        self.norms = nn.ModuleList(RMSNorm(dim, eps) for _ in range(k - 1))
        self.ups = nn.ModuleList(nn.Linear(dim, hidden, bias=False) for _ in range(k - 1))
        self.downs = nn.ModuleList(nn.Linear(hidden, dim, bias=False) for _ in range(k - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, q, D] -> [B, q, k, D]."""
        slots = [x]
        for norm, up, down in zip(self.norms, self.ups, self.downs, strict=True):
            slots.append(x + down(F.silu(up(norm(x)))))
        return torch.stack(slots, dim=2)
