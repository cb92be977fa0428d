"""Runs a draft against its target: prefill, catch-up on accepted tokens, and tree steps.

The draft's cache holds one entry per accepted position (input fc([e_{t+1}; f_t]) with the target's real
feature f_t). While a tree is drafted, its nodes are appended as temporary entries that see the prefix
and their own ancestors only; `end_tree` drops them.
"""

from __future__ import annotations

import torch

from specflash.draft.model import Draft
from specflash.targets import Prefill, Target


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool [B, q, S] -> additive float mask [B, 1, q, S] (0 where allowed, dtype-min elsewhere)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


class Drafter:
    def __init__(self, draft: Draft, target: Target) -> None:
        self.draft, self.target = draft, target
        self.forwards = 0

    def _run(self, embeds, features, positions, allowed) -> torch.Tensor:
        self.forwards += 1
        mask = additive(allowed, embeds.dtype)
        return self.draft(embeds, features, positions, mask, self.cache)

    def _logp(self, predicted: torch.Tensor) -> torch.Tensor:
        return self.target.logits(predicted).log_softmax(-1)

    @torch.inference_mode()
    def start(self, prefill: Prefill, first: torch.Tensor) -> torch.Tensor:
        """Draft prefill over the prompt; returns log-probs of the tokens after `first` [B, V]."""
        self.cache = self.draft.new_cache()
        mask = prefill.attention_mask.bool()
        embeds = torch.cat([prefill.embeds[:, 1:], self.target.embed(first)[:, None]], dim=1)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        length = mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        # Padding queries see themselves only, so no softmax row is empty.
        allowed = (causal & mask[:, None, :]) | torch.eye(length, dtype=torch.bool, device=mask.device)
        predicted = self._run(embeds, prefill.features, positions, allowed)
        self.valid = mask
        self.next_position = mask.long().sum(-1)
        self.root_feature = predicted[:, -1]
        return self._logp(self.root_feature)

    @torch.inference_mode()
    def catch_up(self, features: torch.Tensor, next_tokens: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Feed the accepted path: features f [B, n, D] of its nodes, the token after each [B, n], and
        how many are real per row [B]. Returns log-probs of the tokens after the new root [B, V]."""
        batch, n = next_tokens.shape
        device = next_tokens.device
        real = torch.arange(n, device=device)[None, :] < count[:, None]
        causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        block = (causal[None] & real[:, None, :]) | torch.eye(n, dtype=torch.bool, device=device)
        allowed = torch.cat([self.valid[:, None, :].expand(batch, n, -1), block], dim=-1)
        positions = self.next_position[:, None] + torch.arange(n, device=device)
        predicted = self._run(self.target.embed(next_tokens), features, positions, allowed)
        self.valid = torch.cat([self.valid, real], dim=1)
        self.next_position = self.next_position + count
        self.root_feature = predicted[torch.arange(batch, device=device), count - 1]
        return self._logp(self.root_feature)

    def begin_tree(self) -> None:
        self.prefix_length = self.cache.length
        self.tree_features: list[torch.Tensor] = []
        self.tree_depths: list[torch.Tensor] = []
        self.tree_ancestors: torch.Tensor | None = None  # [B, slots, slots]

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, parent_slots: torch.Tensor) -> torch.Tensor:
        """Draft the children of tree nodes `tokens` [B, n] whose parents sit at `parent_slots` [B, n]."""
        batch, n = tokens.shape
        device = tokens.device
        rows = torch.arange(batch, device=device)[:, None]
        from_root = parent_slots < 0
        slot = parent_slots.clamp(min=0)
        if self.tree_features:
            old_features = torch.cat(self.tree_features, dim=1)
            old_depths = torch.cat(self.tree_depths, dim=1)
            parent_features = torch.where(from_root[..., None], self.root_feature[:, None], old_features[rows, slot])
            depths = torch.where(from_root, 1, old_depths[rows, slot] + 1)
            seen = self.tree_ancestors[rows, slot] & ~from_root[..., None]  # [B, n, old]
        else:
            parent_features = self.root_feature[:, None].expand(batch, n, -1)
            depths = torch.ones(batch, n, dtype=torch.long, device=device)
            seen = torch.zeros(batch, n, 0, dtype=torch.bool, device=device)
        own = torch.eye(n, dtype=torch.bool, device=device).expand(batch, n, n)
        allowed = torch.cat([self.valid[:, None, :].expand(batch, n, -1), seen, own], dim=-1)
        positions = self.next_position[:, None] - 1 + depths
        predicted = self._run(self.target.embed(tokens), parent_features, positions, allowed)
        old = seen.shape[-1]
        grown = torch.zeros(batch, old + n, old + n, dtype=torch.bool, device=device)
        if old:
            grown[:, :old, :old] = self.tree_ancestors
        grown[:, old:, :old] = seen
        grown[:, old:, old:] = own
        self.tree_ancestors = grown
        self.tree_features.append(predicted)
        self.tree_depths.append(depths)
        return self._logp(predicted)

    def end_tree(self) -> None:
        self.cache.truncate(self.prefix_length)
