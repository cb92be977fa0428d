"""The Qwen2.5-VL vision tower's math, faster on the CPU, for training (`use_fast_vision`).

Two parts of the stock tower run far below this CPU's speed at the world target's shapes:
- the patch embedding is a Conv3d whose kernel equals its stride, which is a matmul over flattened
  patches, and runs as one about three times as fast;
- outside flash attention, each image (or frame pair) attends in a call of its own, where the world's
  images and frame pairs all have as many patches: attention is one batched call per run of
  equal-length chunks instead.
Same weights and results up to float rounding (tested); the saved model is the stock one.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

# transformers hands an attention whose name holds "flash" the whole packed sequence with its chunk
# boundaries (cu_seq_lens_q) in one call
CHUNKED_ATTENTION = "specflash_flash_chunks"


def _as_batch(x: torch.Tensor, first: int, count: int, length: int) -> torch.Tensor:
    """count chunks of `length` positions from `first` on, of a packed [1, heads, positions, dim] tensor,
    as a batch [count, heads, length, dim]."""
    heads, dim = x.shape[1], x.shape[-1]
    return x[0, :, first : first + count * length].reshape(heads, count, length, dim).transpose(0, 1)


def _chunked_attention(module, query, key, value, attention_mask, scaling=None, cu_seq_lens_q=None, **kwargs):
    """Attention within each chunk of a packed [1, heads, positions, dim] sequence: one sdpa call per run
    of consecutive chunks of equal length, each run a batch. Returns [1, positions, heads, dim]."""
    outputs, first = [], 0
    for length, run in itertools.groupby(cu_seq_lens_q.diff().tolist()):
        count = len(list(run))
        q, k, v = (_as_batch(x, first, count, length) for x in (query, key, value))
        out, _ = sdpa_attention_forward(module, q, k, v, None, scaling=scaling, is_causal=False)
        outputs.append(out.reshape(1, count * length, *out.shape[2:]))  # out: [count, length, heads, dim]
        first += count * length
    return torch.cat(outputs, dim=1), None


def _patch_embedding_as_matmul(embed: nn.Module) -> None:
    weight = embed.proj.weight  # [embed_dim, channels, temporal, patch, patch]

    def forward(hidden_states: torch.Tensor) -> torch.Tensor:
        flat = hidden_states.reshape(-1, weight[0].numel()).to(weight.dtype)
        return nn.functional.linear(flat, weight.flatten(1))

    embed.forward = forward


def use_fast_vision(model: PreTrainedModel) -> None:
    """Run a Qwen2.5-VL model's vision tower with the faster patch embedding and attention (other
    families are left as they are)."""
    if model.config.model_type != "qwen2_5_vl":
        return
    _patch_embedding_as_matmul(model.model.visual.patch_embed)
    AttentionInterface.register(CHUNKED_ATTENTION, _chunked_attention)
    model.set_attn_implementation({"vision_config": CHUNKED_ATTENTION})
