"""Training batches from a feature store: a seeded held-out split, a seeded order per epoch, and
collation that rebuilds the input embeddings e from the target's embedding table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from specflash.targets import Target
from specflash.targets.family import VisualSpan
from specflash.train.store import FeatureStore, Record


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L], right-padded with 0
    attention_mask: torch.Tensor  # [B, L] 1 = token
    loss_mask: torch.Tensor  # [B, L] bool, assistant tokens
    features: torch.Tensor  # [B, L, D] float32, f
    embeds: torch.Tensor  # [B, L, D] float32, e
    spans: list[list[VisualSpan]]


def split_samples(count: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, eval) sample numbers: a seeded shuffle, the first eval_fraction of it held out (at least one
    sample when the fraction is > 0 and there are two or more)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    held = round(count * eval_fraction)
    if eval_fraction > 0 and count > 1:
        held = min(max(held, 1), count - 1)
    return sorted(order[held:]), sorted(order[:held])


def epoch_order(samples: Sequence[int], seed: int, epoch: int) -> list[int]:
    """The training order of an epoch: a function of (seed, epoch) only, so a resumed run sees the same."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch + 1)
    return [samples[i] for i in torch.randperm(len(samples), generator=generator).tolist()]


def rebuild_embeds(target: Target, record: Record) -> torch.Tensor:
    """e for one record: the target's token embeddings, the stored visual embeddings at span positions."""
    embeds = target.embed(record.input_ids.to(target.device)).float()
    positions = record.visual_positions()
    if len(positions):
        embeds[positions.to(target.device)] = record.visual_embeds.to(target.device, torch.float32)
    return embeds


@torch.no_grad()
def collate(target: Target, records: Sequence[Record]) -> Batch:
    """Right-pad records into a batch on the target's device."""
    length = max(len(r.input_ids) for r in records)
    batch, dim, device = len(records), target.hidden_size, target.device
    ids = torch.zeros(batch, length, dtype=torch.long, device=device)
    attention = torch.zeros(batch, length, dtype=torch.long, device=device)
    loss_mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
    features = torch.zeros(batch, length, dim, device=device)
    embeds = torch.zeros(batch, length, dim, device=device)
    for row, record in enumerate(records):
        n = len(record.input_ids)
        ids[row, :n] = record.input_ids.to(device)
        attention[row, :n] = 1
        loss_mask[row, :n] = record.loss_mask.to(device)
        features[row, :n] = record.features.to(device, torch.float32)
        embeds[row, :n] = rebuild_embeds(target, record)
    return Batch(ids, attention, loss_mask, features, embeds, [list(r.spans) for r in records])


def check_store_fits(store: FeatureStore, target: Target) -> None:
    """ValueError when the features were dumped from another kind of target."""
    facts = store.target
    mine = {"family": target.family_name, "hidden_size": target.hidden_size, "vocab_size": target.vocab_size}
    problems = [f"{k}: features {facts.get(k)}, target {v}" for k, v in mine.items() if facts.get(k) != v]
    if problems:
        raise ValueError(f"{store.directory} was dumped from another target (" + "; ".join(problems) + ")")
