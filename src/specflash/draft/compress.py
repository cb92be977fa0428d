"""Latent-aware visual compression (FLASH.md section 2).

Each visual span's fused draft inputs h_t = fc([e_{t+1}; f_t]) (the target's own view of the image) are
pooled by C learned queries, Z = softmax(Q K^T / sqrt(d)) V, and the C latents replace the span's N
entries in the draft's sequence and KV cache. The draft numbers its entries compactly; `source` maps each
entry back to the target position it stands for (-1 for a latent).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from specflash.draft.layers import RMSNorm
from specflash.targets.family import VisualSpan


class LatentCompressor(nn.Module):
    def __init__(self, dim: int, latents: int, heads: int, eps: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"latent_heads={heads} must divide the draft's width {dim}")
        self.heads = heads
        self.queries = nn.Parameter(torch.zeros(latents, dim))
        self.norm = RMSNorm(dim, eps)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, span: torch.Tensor) -> torch.Tensor:
        """span [N, D] -> latents [C, D]. Each head pools its own slice of the values with its own
        weights, so one latent can gather what lies at different tokens (say, one object's kind and
        another's place)."""
        normed = self.norm(span)
        length, dim = span.shape
        q = self.queries.view(-1, self.heads, dim // self.heads).transpose(0, 1)  # [H, C, d]
        k = self.k_proj(normed).view(length, self.heads, -1).transpose(0, 1)  # [H, N, d]
        v = self.v_proj(normed).view(length, self.heads, -1).transpose(0, 1)
        pooled = F.scaled_dot_product_attention(q, k, v)  # [H, C, d]
        return pooled.transpose(0, 1).reshape(-1, dim)


def compress_spans(
    compressor: LatentCompressor, fused: torch.Tensor, mask: torch.Tensor, spans: Sequence[Sequence[VisualSpan]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace every span of fused inputs [B, L, D] by latents.

    The last entry of a row is never compressed: it is the one whose prediction drafting starts from.
    Returns inputs [B, L', D], mask [B, L'] and source [B, L'] (target position, -1 latent, -2 padding),
    rows left-padded to a common length.
    """
    length = fused.shape[1]
    rows, row_masks, row_sources = [], [], []
    for row, row_spans in enumerate(spans):
        pieces, masks, sources, cursor = [], [], [], 0
        for span in sorted(row_spans, key=lambda s: s.start):
            end = min(span.start + span.length, length - 1)
            if end <= span.start:
                continue
            pieces.append(fused[row, cursor : span.start])
            masks.append(mask[row, cursor : span.start])
            sources.append(torch.arange(cursor, span.start, device=fused.device))
            latents = compressor(fused[row, span.start : end])
            pieces.append(latents.to(fused.dtype))
            masks.append(torch.ones(len(latents), dtype=torch.bool, device=fused.device))
            sources.append(torch.full((len(latents),), -1, device=fused.device))
            cursor = end
        pieces.append(fused[row, cursor:])
        masks.append(mask[row, cursor:])
        sources.append(torch.arange(cursor, length, device=fused.device))
        rows.append(torch.cat(pieces))
        row_masks.append(torch.cat(masks).bool())
        row_sources.append(torch.cat(sources))
    width = max(len(r) for r in rows)
    out = fused.new_zeros(len(rows), width, fused.shape[-1])
    out_mask = torch.zeros(len(rows), width, dtype=torch.bool, device=fused.device)
    out_source = torch.full((len(rows), width), -2, dtype=torch.long, device=fused.device)
    for row, (values, row_mask, source) in enumerate(zip(rows, row_masks, row_sources, strict=True)):
        out[row, width - len(values) :] = values
        out_mask[row, width - len(values) :] = row_mask
        out_source[row, width - len(values) :] = source
    return out, out_mask, out_source
