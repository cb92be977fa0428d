"""The draft's training loss per SAR slot (FLASH.md section 6) and its top-1 agreement with the target.

Slot i of an entry predicts the feature i positions after the entry's first target (`Predictions.first`);
a prediction counts where the entry makes one and the predicted position is an assistant token inside
the sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from specflash.draft.model import Predictions

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SlotLosses:
    total: torch.Tensor  # weighted sum over slots, the quantity to minimise
    smooth_l1: list[float]  # per slot, for logging
    cross_entropy: list[float]
    correct: list[int]  # per slot: predictions whose LM-head argmax equals the target's
    counted: list[int]  # per slot: predictions that count


def slot_targets(
    predictions: Predictions, features: torch.Tensor, loss_mask: torch.Tensor, attention_mask: torch.Tensor, slot: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For slot `slot`: the true features [B, E, D] its predictions aim at and the bool [B, E] of
    predictions that count (the entry makes one, its position is an assistant token in the sequence)."""
    length = features.shape[1]
    position = predictions.first + slot
    inside = (predictions.first >= 0) & (position < length)
    position = torch.where(inside, position, 0)
    counts = inside & loss_mask.gather(1, position) & attention_mask.gather(1, position).bool()
    target = features[torch.arange(features.shape[0], device=features.device)[:, None], position]
    return target, counts


def slot_losses(
    predictions: Predictions,
    features: torch.Tensor,
    loss_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_of: LogitsFn,
    slot_weights: Sequence[float],
    w_smooth_l1: float = 1.0,
    w_ce: float = 0.1,
) -> SlotLosses:
    """predictions of one pass of `Draft.forward_sequence`; features f [B, L, D]; loss_mask,
    attention_mask [B, L]; `logits_of` the target's frozen LM head. Per slot: mean SmoothL1 over counted
    predictions (mean over D) + w_ce * soft cross-entropy of the LM head's distributions."""
    total = predictions.features.new_zeros(())
    result = SlotLosses(total, [], [], [], [])
    for slot, weight in enumerate(slot_weights):
        target, counts = slot_targets(predictions, features, loss_mask, attention_mask, slot)
        guess, truth = predictions.features[:, :, slot][counts], target[counts]
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
