"""Stage-2 batches as one packed row, and the language-model attention that runs them.

A batch padded to its longest sample spends a quarter of the language model's positions on padding
(the world's samples run from about 100 to 300 tokens), and its attention covers every pair of
positions up to the longest. Packed, the samples lie end to end in one row, each with its own
positions; `packed_attention` attends within each sample alone, causally. Every sample is computed
as it is alone, the same math as the padded batch up to float rounding (tested).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import AttentionMaskInterface, find_packed_sequence_indices

# no "flash" in the name: transformers would take it for a flash-attention kernel to load
PACKED_ATTENTION = "world_packed"
SEQUENCE_KEYS = ("input_ids", "labels", "mm_token_type_ids", "change_labels")  # [samples, positions] tensors


class QueriesAndKeys(NamedTuple):
    """What one language layer's attention weights come from, returned where transformers returns
    attention weights: a loss that reads a few rows of weights (lookup_attention.py) computes them from
    these, where eager attention would build all of them."""

    query: torch.Tensor  # [batch, heads, positions, head_dim], position encoding applied
    key: torch.Tensor  # [batch, key_heads, positions, head_dim]
    sequences: torch.Tensor  # [batch, positions]: which packed sample each position belongs to
    scaling: float


def sequence_ids(position_ids: torch.Tensor | None, batch: int, length: int) -> torch.Tensor:
    """Which sample of its row each position belongs to: a new one starts where the positions do not
    go on by one. Without positions, each row is one sample (padded on the right)."""
    found = None if position_ids is None else find_packed_sequence_indices(position_ids.expand(batch, -1))
    return torch.zeros(batch, length, dtype=torch.long) if found is None else found.cpu()


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_ids: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, QueriesAndKeys]:
    """Causal sdpa attention within each sample of each row (samples told apart by position_ids), one
    call per sample; returns [batch, positions, heads, dim] and the layer's QueriesAndKeys."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    batch, heads, length, _ = query.shape
    sequences = sequence_ids(position_ids, batch, length)
    groups = heads // key.shape[1]
    keys, values = repeat_kv(key, groups), repeat_kv(value, groups)
    rows = []
    for row in range(batch):
        lengths = torch.unique_consecutive(sequences[row], return_counts=True)[1].tolist()
        parts = zip(*(x[row : row + 1].split(lengths, dim=2) for x in (query, keys, values)), strict=True)
        outputs = [
            F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)
            for q, k, v in parts
        ]
        rows.append(torch.cat(outputs, dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), QueriesAndKeys(query, key, sequences, scaling)


def _no_mask(*args, **kwargs) -> None:
    return None  # packed_attention finds each sample's bounds in the positions


def use_packed_attention(model: PreTrainedModel) -> None:
    """Run `model`'s language model with packed_attention: packed rows (position_ids starting over at
    each sample) or right-padded ones, causal; with `output_attentions=True` each layer returns its
    QueriesAndKeys."""
    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    AttentionMaskInterface.register(PACKED_ATTENTION, _no_mask)
    text_only = model.config.get_text_config() is model.config
    model.set_attn_implementation(PACKED_ATTENTION if text_only else {"text_config": PACKED_ATTENTION})


def _own_positions(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each sample's position ids as if it were alone, [samples, positions] (padding included); for
    Qwen2.5-VL's multimodal rotary positions, [4, samples, positions]: the text positions that tell the
    samples apart, then the three rotary rows the model computes for them."""
    mask = batch["attention_mask"]
    text = mask.long().cumsum(-1) - 1
    rope_index = getattr(model.model, "get_rope_index", None)
    if rope_index is None:
        return text
    names = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
    rotary, _ = rope_index(batch["input_ids"], batch["mm_token_type_ids"], *(batch.get(n) for n in names), mask)
    return torch.cat([text[None], rotary])


class Packed(NamedTuple):
    """A batch packed into one row, and where each of its samples starts there."""

    inputs: dict[str, torch.Tensor]  # one row: model inputs, labels and any other SEQUENCE_KEYS
    starts: list[int]  # where each sample starts in the row


def pack(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> Packed:
    """The right-padded batch as one row, padding dropped, each sample with its own positions. Images
    and videos stay in their order, which is the row's. No sample's first label is predicted from the
    sample before it: a sample's first token is never labelled."""
    real = batch["attention_mask"].bool()
    if not real[:, 0].all() or (real[:, 1:] & ~real[:, :-1]).any():
        raise ValueError("pack() takes right-padded batches")
    if "labels" in batch and (batch["labels"][:, 0] != -100).any():
        raise ValueError("a sample's first token is labelled; packed, the sample before would predict it")
    inputs = {k: v for k, v in batch.items() if k != "attention_mask" and k not in SEQUENCE_KEYS}
    inputs.update({k: batch[k][real][None] for k in SEQUENCE_KEYS if k in batch})
    positions = _own_positions(model, batch)
    inputs["position_ids"] = positions[real][None] if positions.dim() == 2 else positions[:, real][:, None]
    lengths = real.sum(1)
    starts = (lengths.cumsum(0) - lengths).tolist()
    return Packed(inputs, starts)
