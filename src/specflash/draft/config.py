"""Draft configuration: the user's knobs plus the target facts it was built for."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DraftConfig:
    """`k`: features predicted per position (1 = EAGLE-style); `latents`: learned latents per visual span
    (0 = no compression); `layers`: decoder layers. Sizes left as None are taken from the target."""

    k: int = 1
    latents: int = 0
    layers: int = 1
    # Heads of the latent pooling; resolved to the draft's head count. Drafts saved before multi-head
    # pooling lack it and pool with one head, as they were trained.
    latent_heads: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    intermediate_size: int | None = None
    rope_theta: float | None = None
    rms_norm_eps: float = 1e-6
    # Facts of the target the draft is built for; filled by `resolve`.
    hidden_size: int | None = None
    vocab_size: int | None = None
    target_family: str | None = None
    target_model_type: str | None = None  # tells apart architectures one family serves (Qwen2-VL, Qwen2.5-VL)

    def __post_init__(self) -> None:
        optional = ("latent_heads", "heads", "kv_heads", "intermediate_size")  # None: the target's
        for name, least in (("k", 1), ("layers", 1), ("latents", 0), *((name, 1) for name in optional)):
            value = getattr(self, name)
            if name in optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"DraftConfig.{name} must be an integer >= {least}, got {value!r}")
        for name in ("rope_theta", "rms_norm_eps"):
            value = getattr(self, name)
            if name == "rope_theta" and value is None:
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise ValueError(f"DraftConfig.{name} must be a finite number > 0, got {value!r}")

    def resolve(self, target: Any) -> DraftConfig:
        """Fill every size the user left open from the target's text model."""
        text = target.text_config
        heads = self.heads or text.num_attention_heads
        rope = getattr(text, "rope_parameters", None) or {}
        return dataclasses.replace(
            self,
            heads=heads,
            latent_heads=self.latent_heads or heads,
            kv_heads=self.kv_heads or getattr(text, "num_key_value_heads", None) or heads,
            intermediate_size=self.intermediate_size or text.intermediate_size,
            rope_theta=self.rope_theta or rope.get("rope_theta", getattr(text, "rope_theta", 10000.0)),
            hidden_size=target.hidden_size,
            vocab_size=target.vocab_size,
            target_family=target.family_name,
            target_model_type=target.model_type,
        )

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: Path) -> DraftConfig:
        data = json.loads(path.read_text())
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown draft config keys {unknown}")
        return cls(**data)
