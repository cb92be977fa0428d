"""Per-generation state of a target: its KV cache, which cache slots are real, and each row's positions.

Rows of a batch accept different numbers of tokens per cycle, so after compaction some rows have unused
slots ("holes") at the end of a cycle's block. Instead of shifting rows apart we keep one slot layout for
the batch and mark each slot valid or not per row; the attention mask hides invalid slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class TargetState:
    cache: DynamicCache
    valid: torch.Tensor  # [B, S] bool: cache slot holds a real token of that row
    lengths: torch.Tensor  # [B] long: real tokens per row, i.e. the next text position
    rope_deltas: torch.Tensor  # [B] long: offset added to text positions (Qwen2.5-VL M-RoPE), else 0

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    def attention_mask(self, tree_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive [B, 1, T, S+T] mask: each query sees the row's valid slots and its tree ancestors."""
        batch, tree_size, _ = tree_mask.shape
        seen = torch.cat([self.valid[:, None, :].expand(batch, tree_size, -1), tree_mask], dim=-1)
        mask = torch.zeros(seen.shape, dtype=dtype, device=seen.device)
        mask.masked_fill_(~seen, torch.finfo(dtype).min)
        return mask[:, None]

    def append(self, tree_size: int) -> None:
        """Record that a forward of `tree_size` tokens was appended to the cache (all slots valid for now)."""
        new = torch.ones(self.batch_size, tree_size, dtype=torch.bool, device=self.valid.device)
        self.valid = torch.cat([self.valid, new], dim=1)

    def keep(self, tree_size: int, keep_index: torch.Tensor, keep_count: torch.Tensor) -> None:
        """Keep, of the last `tree_size` appended slots, `keep_index[b, :keep_count[b]]` per row, in order.

        The kept slots move to the front of the block; the block is cut to the longest row's count, and
        the rest of each row's block becomes invalid.
        """
        width = keep_index.shape[1]
        for layer in self.cache.layers:
            layer.keys = _compact(layer.keys, tree_size, keep_index)
            layer.values = _compact(layer.values, tree_size, keep_index)
        slots = torch.arange(width, device=keep_count.device)[None, :]
        kept = slots < keep_count[:, None]
        self.valid = torch.cat([self.valid[:, :-tree_size], kept.to(self.valid.device)], dim=1)
        self.lengths = self.lengths + keep_count.to(self.lengths.device)


def _compact(tensor: torch.Tensor, tree_size: int, keep_index: torch.Tensor) -> torch.Tensor:
    """[B, H, S+T, D] -> [B, H, S+W, D]: the kept slots written to the front of the last block, in place,
    then a view cut after them; the S cached slots before the block are never copied."""
    batch, heads, length, dim = tensor.shape
    start, width = length - tree_size, keep_index.shape[1]
    index = keep_index.to(tensor.device)[:, None, :, None].expand(batch, heads, -1, dim)
    tensor[:, :, start : start + width] = tensor[:, :, start:].gather(2, index)  # gather copies first
    return tensor[:, :, : start + width]
