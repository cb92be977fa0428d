"""Runs a draft against its target: prefill, catch-up on accepted tokens, and tree group passes.

The draft's cache holds one entry per accepted position (input fc([e_{t+1}; f_t]) with the target's real
feature f_t), visual spans compressed to latents when the draft has a compressor. While a tree is
drafted, its nodes become temporary entries that see the prefix and their own ancestors only;
`end_tree` drops them. Every pass returns, for the entries asked for, the log-probabilities of the k
tokens after them (slot i: i+1 steps ahead).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from specflash.draft.model import Draft, additive, causal_inputs
from specflash.targets import Prefill, Target


class Drafter:
    def __init__(self, draft: Draft, target: Target) -> None:
        self.draft, self.target = draft, target
        self.forwards = 0

    @property
    def k(self) -> int:
        return self.draft.config.k

    def _logp(self, predicted: torch.Tensor) -> torch.Tensor:
        return self.target.logits(predicted).log_softmax(-1)

    @torch.inference_mode()
    def start(self, prefill: Prefill, first: torch.Tensor) -> torch.Tensor:
        """Draft prefill over the prompt; returns log-probs [B, k, V] of the k tokens after `first`."""
        self.cache = self.draft.new_cache()
        embeds = torch.cat([prefill.embeds[:, 1:], self.target.embed(first)[:, None]], dim=1)
        fused = self.draft.fuse(embeds, prefill.features)
        x, mask, _ = self.draft.compress(fused, prefill.attention_mask, prefill.spans)
        positions, causal = causal_inputs(mask, x.dtype)
        self.forwards += 1
        predicted = self.draft.decode(x, positions, causal, self.cache)
        self.valid = mask
        self.next_position = mask.long().sum(-1)
        self.root = predicted[:, -1]  # [B, k, D]; the last entry is never compressed
        return self._logp(self.root)

    @torch.inference_mode()
    def catch_up(self, features: torch.Tensor, next_tokens: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Feed the accepted path: features f [B, n, D] of its nodes, the token after each [B, n], and
        how many are real per row [B]. Returns log-probs [B, k, V] after the new root."""
        batch, n = next_tokens.shape
        device = next_tokens.device
        real = torch.arange(n, device=device)[None, :] < count[:, None]
        causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        block = (causal[None] & real[:, None, :]) | torch.eye(n, dtype=torch.bool, device=device)
        allowed = torch.cat([self.valid[:, None, :].expand(batch, n, -1), block], dim=-1)
        positions = self.next_position[:, None] + torch.arange(n, device=device)
        self.forwards += 1
        predicted = self.draft(
            self.target.embed(next_tokens), features, positions, additive(allowed, features.dtype), self.cache
        )
        self.valid = torch.cat([self.valid, real], dim=1)
        self.next_position = self.next_position + count
        self.root = predicted[torch.arange(batch, device=device), count - 1]
        return self._logp(self.root)

    def begin_tree(self) -> None:
        self.prefix_length = self.cache.length
        self.entry_features: torch.Tensor | None = None  # [B, entries, k, D]
        self.entry_depths: torch.Tensor | None = None  # [B, entries]
        self.entry_ancestors: torch.Tensor | None = None  # [B, entries, entries]

    @torch.inference_mode()
    def step(
        self,
        tokens: torch.Tensor,
        parents: torch.Tensor,
        anchors: torch.Tensor,
        slots: torch.Tensor,
        wanted: torch.Tensor,
    ) -> torch.Tensor:
        """One group pass: new tree entries for nodes `tokens` [B, n], spanning at most k tree levels.

        parents [B, n]: entry of each node's parent (-1 the root; entries are numbered over the whole
        tree, so those of this pass are old + j). anchors, slots [B, n]: the entry and slot whose
        predicted feature is the node's input feature. wanted [B, m]: indices (into this pass) of the
        entries whose k next-token log-probs to return, [B, m, k, V].
        """
        batch, n = tokens.shape
        device = tokens.device
        rows = torch.arange(batch, device=device)[:, None]
        old = 0 if self.entry_depths is None else self.entry_depths.shape[1]
        features = self._features(anchors, slots, rows)
        ancestors = torch.zeros(batch, old + n, old + n, dtype=torch.bool, device=device)
        depths = torch.zeros(batch, old + n, dtype=torch.long, device=device)
        if old:
            ancestors[:, :old, :old] = self.entry_ancestors
            depths[:, :old] = self.entry_depths
        # A pass spans at most k levels (a group), so k rounds of "my parent's line plus me" settle it.
        has_parent = (parents >= 0)[..., None]
        own = torch.zeros(batch, n, old + n, dtype=torch.bool, device=device)
        own[:, :, old:] = torch.eye(n, dtype=torch.bool, device=device)
        for _ in range(self.k):
            ancestors[:, old:] = (ancestors[rows, parents.clamp(min=0)] & has_parent) | own
            depths[:, old:] = torch.where(parents >= 0, depths[rows, parents.clamp(min=0)] + 1, 1)
        seen = ancestors[:, old:, :]
        allowed = torch.cat([self.valid[:, None, :].expand(batch, n, -1), seen], dim=-1)
        positions = self.next_position[:, None] - 1 + depths[:, old:]
        self.forwards += 1
        predicted = self.draft(
            self.target.embed(tokens), features, positions, additive(allowed, features.dtype), self.cache
        )
        self.entry_ancestors, self.entry_depths = ancestors, depths
        self.entry_features = predicted if old == 0 else torch.cat([self.entry_features, predicted], dim=1)
        return self._logp(predicted[rows, wanted])

    def _features(self, anchors: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The predicted feature each new node reads: slot `slots` of entry `anchors` (or of the root)."""
        from_root = self.root[rows, slots]  # [B, n, D]
        if self.entry_features is None:
            return from_root
        from_entry = self.entry_features[rows, anchors.clamp(min=0), slots]
        return torch.where((anchors < 0)[..., None], from_root, from_entry)

    def end_tree(self) -> None:
        self.cache.truncate(self.prefix_length)

    @contextmanager
    def trial(self) -> Iterator[None]:
        """Passes run inside leave the drafter as it was, forward count included (for timing them)."""
        saved = (self.cache.length, self.valid, self.next_position, self.root, self.forwards)
        try:
            yield
        finally:
            length, self.valid, self.next_position, self.root, self.forwards = saved
            self.cache.truncate(length)
