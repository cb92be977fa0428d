"""`specflash.Draft`: the small model that proposes tokens from the target's features.

Input at position t is fc([e_{t+1}; f_t]) (FLASH.md section 1); the output is a predicted feature that
the target's frozen LM head turns into logits. The draft owns no embedding and no LM head: it reads the
target's, so its checkpoint holds only its own weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from specflash.draft.cache import DraftCache
from specflash.draft.compress import LatentCompressor, compress_spans
from specflash.draft.config import DraftConfig
from specflash.draft.head import SlotHead
from specflash.draft.layers import DecoderLayer
from specflash.targets.family import VisualSpan

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def causal_inputs(mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Compact positions [B, q] and an additive causal mask [B, 1, q, q] for entries `mask` [B, q].
    Padding entries see only themselves, so no softmax row is empty."""
    length = mask.shape[1]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    allowed = (causal & mask[:, None, :]) | torch.eye(length, dtype=torch.bool, device=mask.device)
    return positions, additive(allowed, dtype)


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool [B, q, S] -> additive float mask [B, 1, q, S] (0 where allowed, dtype-min elsewhere)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


@dataclass
class Predictions:
    """Predicted features [B, E, k, D] of E draft entries and, per entry [B, E], the sequence position
    whose feature slot 0 predicts (slot i: that position + i); -1 where the entry predicts nothing."""

    features: torch.Tensor
    first: torch.Tensor


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
                dim,
                config.heads,
                config.kv_heads,
                config.intermediate_size,
                config.rope_theta,
                config.rms_norm_eps,
            )
            for _ in range(config.layers)
        )
        self.head = SlotHead(dim, config.k, config.rms_norm_eps) if config.k > 1 else None
        pooling_heads = config.latent_heads or 1  # drafts saved before multi-head pooling: one head
        self.compressor = (
            LatentCompressor(dim, config.latents, pooling_heads, config.rms_norm_eps) if config.latents else None
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

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters by part: the plain draft (fusion and layers), the k-slot head, the
        compressor."""

        def count(module: nn.Module | None) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        return {
            "draft": count(self.fc) + count(self.layers),
            "slot_head": count(self.head),
            "compressor": count(self.compressor),
        }

    def fuse(self, embeds: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """fc([e_{t+1}; f_t]): the draft's input at each position."""
        return self.fc(torch.cat([embeds, features], dim=-1))

    def compress(
        self, fused: torch.Tensor, mask: torch.Tensor, spans: list[list[VisualSpan]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Visual spans -> latents (identity when compression is off); see `compress_spans`."""
        if self.compressor is None or not any(spans):
            source = torch.arange(fused.shape[1], device=fused.device).expand(fused.shape[0], -1)
            return fused, mask.bool(), torch.where(mask.bool(), source, -2)
        return compress_spans(self.compressor, fused, mask.bool(), spans)

    def decode(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: DraftCache) -> torch.Tensor:
        """Fused inputs [B, q, D], draft positions [B, q], additive mask [B, 1, q, S+q] over cache and new
        entries; returns predicted features [B, q, k, D] (slot i: i+1 steps ahead)."""
        for index, layer in enumerate(self.layers):
            x = layer(x, positions, mask, cache, index)
        return x[:, :, None] if self.head is None else self.head(x)

    def forward(
        self,
        embeds: torch.Tensor,
        features: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        cache: DraftCache,
    ) -> torch.Tensor:
        """embeds e_{t+1} and features f_t [B, q, D]; see `decode`."""
        return self.decode(self.fuse(embeds, features), positions, mask, cache)

    def forward_sequence(
        self,
        features: torch.Tensor,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        spans: list[list[VisualSpan]] | None = None,
        group_roots: torch.Tensor | None = None,
    ) -> list[Predictions]:
        """Teacher-forced pass over whole sequences, for training and evaluation.

        features f and embeds e [B, L, D] as the target produced them, attention_mask [B, L] (1 = token,
        padding on either side), the visual spans per row (needed when compression is on). Returns the
        predictions of the teacher-forced pass: one entry per position t < L-1 (compressed visual
        positions excepted), slot i predicting f[t+1+i].

        group_roots [B, L] bool adds a second, rehearsed pass (training-time test): every position t
        marked there acts as the root of a tree group, as in `Drafter.step`: group entry j reads slot j's
        predicted feature with the true token after it, sees the true entries up to t and the group
        entries before it, and its slot i predicts f[t+2+j+i].
        """
        mask = attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()
        batch = mask.shape[0]
        fused = self.fuse(embeds[:, 1:], features[:, :-1])
        x, entry_mask, source = self.compress(fused, mask, spans or [[] for _ in range(batch)])
        positions, causal = causal_inputs(entry_mask, x.dtype)
        cache = self.new_cache()
        predicted = self.decode(x, positions, causal, cache)
        passes = [Predictions(predicted, torch.where(entry_mask & (source >= 0), source + 1, -1))]
        if group_roots is not None:
            passes.append(
                self._group_pass(predicted, entry_mask, source, positions, embeds, attention_mask, group_roots, cache)
            )
        return passes

    def _group_pass(
        self,
        predicted: torch.Tensor,
        entry_mask: torch.Tensor,
        source: torch.Tensor,
        positions: torch.Tensor,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        group_roots: torch.Tensor,
        cache: DraftCache,
    ) -> Predictions:
        """The rehearsed group pass of `forward_sequence` over the teacher-forced pass's cache."""
        batch, entries = source.shape
        k, length, device = self.config.k, embeds.shape[1], embeds.device
        rows = torch.arange(batch, device=device)[:, None]
        is_root = entry_mask & (source >= 0) & group_roots.gather(1, source.clamp(min=0))
        count = is_root.sum(-1)
        width = max(int(count.max()), 1)
        # Root entries first, in sequence order (a stable sort of "not a root").
        roots = (~is_root).long().sort(dim=-1, stable=True).indices[:, :width]  # [B, R]
        real_root = torch.arange(width, device=device)[None] < count[:, None]
        level = torch.arange(k, device=device)
        stands_for = source.gather(1, roots)[..., None] + 1 + level  # [B, R, k]: position of group entry j
        token = (stands_for + 1).clamp(max=length - 1)
        real = (
            real_root[..., None]
            & (stands_for + 1 < length)
            & attention_mask.gather(1, token.reshape(batch, -1)).bool().view(batch, width, k)
        )
        inputs = self.fuse(
            embeds[rows, token.reshape(batch, -1)], predicted[rows, roots].detach().reshape(batch, width * k, -1)
        )
        # Group entry (r, j) sees the true entries up to its root and the entries (r, j' <= j).
        sees_prefix = (torch.arange(entries, device=device)[None, None] <= roots[..., None]) & entry_mask[:, None]
        sees_prefix = sees_prefix[:, :, None].expand(-1, -1, k, -1).reshape(batch, width * k, entries)
        same_root = torch.eye(width, dtype=torch.bool, device=device)[:, None, :, None]
        earlier = (level[None, :] <= level[:, None])[None, :, None, :]
        sees_group = (same_root & earlier).reshape(1, width * k, width * k).expand(batch, -1, -1)
        allowed = torch.cat([sees_prefix & real.reshape(batch, -1, 1), sees_group], dim=-1)
        group_positions = (positions.gather(1, roots)[..., None] + 1 + level).reshape(batch, -1)
        out = self.decode(inputs, group_positions, additive(allowed, inputs.dtype), cache)
        return Predictions(out, torch.where(real, stands_for + 1, -1).reshape(batch, -1))

    def check_target(self, target: Any) -> None:
        """Raise ValueError naming each way this draft does not fit `target`."""
        config = self.config
        facts = [
            ("hidden size", config.hidden_size, target.hidden_size),
            ("vocabulary size", config.vocab_size, target.vocab_size),
            ("model family", config.target_family, target.family_name),
        ]
        if config.target_model_type is not None:  # drafts saved before it was recorded lack it
            facts.append(("model type", config.target_model_type, target.model_type))
        problems = [f"{what}: draft {mine}, target {theirs}" for what, mine, theirs in facts if mine != theirs]
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
