"""Text-only causal LMs (Llama, Qwen2 and relatives)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from specflash.targets.family import Family, PrefillForward


class TextFamily(Family):
    name = "text"
    model_types = ("llama", "qwen2", "mistral", "qwen3")

    @property
    def decoder(self) -> nn.Module:
        return self.model.model

    def prefill(self, inputs: dict[str, torch.Tensor], cache: Any) -> PrefillForward:
        positions, rope_deltas = self.prefill_positions(inputs)
        embeds = self.model.get_input_embeddings()(inputs["input_ids"])
        out = self.decoder(
            inputs_embeds=embeds,
            attention_mask=inputs["attention_mask"],
            position_ids=positions,
            cache=cache,
            use_cache=True,
        )
        return PrefillForward(out.last_hidden_state, embeds, rope_deltas)
