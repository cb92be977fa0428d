"""What differs between model families: how a prompt is prefilled, positions, visual spans, input checks.

Everything else (tree verification, cache compaction, the decode loop) is shared and lives outside the
family adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class VisualSpan:
    """A run of visual positions the target consumed as one unit (an image, or one video frame group)."""

    start: int  # index in the (padded) prompt
    length: int
    kind: str  # "image" or "video"
    media: int  # which image or video of the batch it came from


@dataclass
class PrefillForward:
    hidden: torch.Tensor  # [B, L, D] final (post-norm) hidden states
    embeds: torch.Tensor  # [B, L, D] input embeddings, projected visual features at visual positions
    rope_deltas: torch.Tensor  # [B]


class Family:
    """Base adapter; subclasses name the HF model types they serve."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    # keys of the processor output that the model's forward takes, besides input_ids and attention_mask
    media_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @property
    def text_config(self) -> Any:
        return self.model.config.get_text_config()

    @property
    def decoder(self) -> nn.Module:
        """The text decoder: takes inputs_embeds, positions, a mask and a cache; returns post-norm states."""
        return self.model.model.language_model

    def validate(self, inputs: dict[str, torch.Tensor]) -> None:
        """Raise ValueError when the media do not match the prompt's placeholder tokens."""

    def visual_spans(self, inputs: dict[str, torch.Tensor]) -> list[list[VisualSpan]]:
        return [[] for _ in range(inputs["input_ids"].shape[0])]

    def prefill_positions(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Position ids for the prompt and the per-row offset of later text positions."""
        mask = inputs["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        return positions, torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)

    def positions(self, text_positions: torch.Tensor, rope_deltas: torch.Tensor) -> torch.Tensor:
        """Decoder position ids for new tokens at the given text positions [B, T]."""
        return text_positions

    def prefill(self, inputs: dict[str, torch.Tensor], cache: Any) -> PrefillForward:
        positions, rope_deltas = self.prefill_positions(inputs)
        media = {key: inputs[key] for key in self.media_keys if inputs.get(key) is not None}
        captured: dict[str, torch.Tensor] = {}

        def capture(_module: nn.Module, _args: tuple, kwargs: dict) -> None:
            captured["embeds"] = kwargs["inputs_embeds"]

        handle = self.decoder.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            out = self.model.model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                position_ids=positions,
                cache=cache,
                use_cache=True,
                **media,
            )
        finally:
            handle.remove()
        return PrefillForward(out.last_hidden_state, captured["embeds"], rope_deltas)


def count_tokens(input_ids: torch.Tensor, token_id: int | None) -> int:
    return 0 if token_id is None else int((input_ids == token_id).sum())
