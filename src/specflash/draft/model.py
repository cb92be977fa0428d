"""`specflash.Draft`: the small model that proposes tokens from the target's features.

Input at position t is fc([e_{t+1}; f_t]) (FLASH.md section 1); the output is a predicted feature that
the target's frozen LM head turns into logits. The draft owns no embedding and no LM head: it reads the
target's, so its checkpoint holds only its own weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from specflash.draft.cache import DraftCache
from specflash.draft.config import DraftConfig
from specflash.draft.layers import DecoderLayer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class Draft(nn.Module):
    def __init__(self, config: DraftConfig) -> None:
        super().__init__()
        if config.hidden_size is None:
            raise ValueError("the draft config is not resolved against a target; use Draft.for_target")
        self.config = config
        dim = config.hidden_size
        self.fc = nn.Linear(2 * dim, dim, bias=True)
        self.layers = nn.ModuleList(
            DecoderLayer(
                dim, config.heads, config.kv_heads, config.intermediate_size, config.rope_theta,
                config.rms_norm_eps,
            )
            for _ in range(config.layers)
        )

    @classmethod
    def for_target(cls, target: Any, config: DraftConfig | None = None, seed: int = 0) -> Draft:
        """A new, untrained draft sized for `target`, on its device and in its dtype."""
        generator = torch.Generator().manual_seed(seed)
        draft = cls((config or DraftConfig()).resolve(target))
        for name, param in draft.named_parameters():
            if name.endswith("norm.weight"):
                continue
            with torch.no_grad():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02 if param.ndim > 1 else 0)
        return draft.to(device=target.device, dtype=target.dtype)

    def new_cache(self) -> DraftCache:
        return DraftCache(len(self.layers))

    def forward(
        self,
        embeds: torch.Tensor,
        features: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        cache: DraftCache,
    ) -> torch.Tensor:
        """embeds e_{t+1} and features f_t [B, q, D], draft positions [B, q], additive mask
        [B, 1, q, S+q] over cache and new entries; returns predicted features [B, q, D]."""
        x = self.fc(torch.cat([embeds, features], dim=-1))
        for index, layer in enumerate(self.layers):
            x = layer(x, positions, mask, cache, index)
        return x

    def forward_sequence(
        self, features: torch.Tensor, embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over whole sequences, for training and evaluation.

        features f and embeds e [B, L, D] as the target produced them, attention_mask [B, L] (1 = token,
        padding on either side). Returns predictions [B, L-1, k, D], where [b, t, i] predicts
        f[b, t+1+i], and a bool [B, L-1] telling which positions carry a prediction.
        """
        mask = attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()
        length = mask.shape[1]
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        allowed = (causal & mask[:, None, :]) | torch.eye(length, dtype=torch.bool, device=mask.device)
        additive = torch.zeros(allowed.shape, dtype=features.dtype, device=mask.device)
        additive = additive.masked_fill(~allowed, torch.finfo(features.dtype).min)[:, None]
        predicted = self(embeds[:, 1:], features[:, :-1], positions, additive, self.new_cache())
        return predicted[:, :, None], mask

    def check_target(self, target: Any) -> None:
        """Raise ValueError naming each way this draft does not fit `target`."""
        config = self.config
        problems = [
            f"{what}: draft {mine}, target {theirs}"
            for what, mine, theirs in (
                ("hidden size", config.hidden_size, target.hidden_size),
                ("vocabulary size", config.vocab_size, target.vocab_size),
                ("model family", config.target_family, target.family_name),
            )
            if mine != theirs
        ]
        if problems:
            raise ValueError("the draft was built for another target (" + "; ".join(problems) + ")")

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_json(directory / CONFIG_FILE)
        weights = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(weights, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Draft:
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise ValueError(f"{directory} is not a draft directory: {name} is missing")
        draft = cls(DraftConfig.from_json(directory / CONFIG_FILE))
        state = load_file(str(directory / WEIGHTS_FILE))
        missing, unexpected = draft.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{directory}: weights do not match the config (missing {missing}, unexpected {unexpected})"
            )
        return draft.to(device=device, dtype=dtype).eval()
