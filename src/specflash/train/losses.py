"""The draft's training loss per SAR slot (FLASH.md section 6) and its top-1 agreement with the target.

Slot i at position t predicts f[t+1+i]; a prediction counts where the draft made one (`has`) and the
predicted position is an assistant token inside the sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SlotLosses:
    total: torch.Tensor  # weighted sum over slots, the quantity to minimise
    smooth_l1: list[float]  # per slot, for logging
    cross_entropy: list[float]
    correct: list[int]  # per slot: predictions whose LM-head argmax equals the target's
    counted: list[int]  # per slot: predictions that count


def slot_targets(
    features: torch.Tensor, has: torch.Tensor, loss_mask: torch.Tensor, attention_mask: torch.Tensor, slot: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For slot `slot`: the true features aligned with the predictions [B, L-1, D] and the bool [B, L-1]
    of predictions that count."""
    batch, length, dim = features.shape
    shift = 1 + slot
    target = features.new_zeros(batch, length - 1, dim)
    counts = torch.zeros(batch, length - 1, dtype=torch.bool, device=features.device)
    if shift < length:
        target[:, : length - shift] = features[:, shift:]
        valid = loss_mask[:, shift:] & attention_mask[:, shift:].bool()
        counts[:, : length - shift] = valid & has[:, : length - shift]
    return target, counts


def slot_losses(
    predicted: torch.Tensor,
    has: torch.Tensor,
    features: torch.Tensor,
    loss_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_of: LogitsFn,
    slot_weights: Sequence[float],
    w_smooth_l1: float = 1.0,
    w_ce: float = 0.1,
) -> SlotLosses:
    """predicted [B, L-1, k, D] and has [B, L-1] from `Draft.forward_sequence`; features f [B, L, D];
    loss_mask, attention_mask [B, L]; `logits_of` the target's frozen LM head. Per slot: mean SmoothL1 over
    counted positions (mean over D) + w_ce * soft cross-entropy of the LM head's distributions."""
    total = predicted.new_zeros(())
    result = SlotLosses(total, [], [], [], [])
    for slot, weight in enumerate(slot_weights):
        target, counts = slot_targets(features, has, loss_mask, attention_mask, slot)
        guess, truth = predicted[:, :, slot][counts], target[counts]
        n = guess.shape[0]
        if n == 0:
            for values in (result.smooth_l1, result.cross_entropy):
                values.append(0.0)
            result.correct.append(0)
            result.counted.append(0)
            continue
        regression = F.smooth_l1_loss(guess.float(), truth.float())
        guess_logits = logits_of(guess)
        with torch.no_grad():
            true_logits = logits_of(truth)
            true_probs = true_logits.softmax(-1)
        cross_entropy = -(true_probs * guess_logits.log_softmax(-1)).sum(-1).mean()
        total = total + weight * (w_smooth_l1 * regression + w_ce * cross_entropy)
        result.smooth_l1.append(float(regression.detach()))
        result.cross_entropy.append(float(cross_entropy.detach()))
        result.correct.append(int((guess_logits.argmax(-1) == true_logits.argmax(-1)).sum()))
        result.counted.append(n)
    result.total = total
    return result
