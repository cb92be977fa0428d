"""Training configuration: the draft's shape and the optimisation knobs, read from one TOML file.

[draft]            # DraftConfig fields (k, latents, layers, heads, ...)
k = 3
latents = 16
[train]            # TrainConfig fields
lr = 3e-4
batch_size = 8
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specflash.draft import DraftConfig

UNIONS = (typing.Union, types.UnionType)  # what `int | None` and `Optional[int]` are

# DraftConfig fields a user may set; the rest are facts filled from the target.
USER_DRAFT_KEYS = (
    "k",
    "latents",
    "layers",
    "latent_heads",
    "heads",
    "kv_heads",
    "intermediate_size",
    "rope_theta",
    "rms_norm_eps",
)


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 3e-4
    batch_size: int = 4  # samples per step on each process
    epochs: int = 1
    steps: int = 0  # > 0: stop after this many optimizer steps (overrides epochs)
    warmup_steps: int = 0  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 0.5  # max gradient norm; 0 turns clipping off
    w_smooth_l1: float = 1.0
    w_ce: float = 0.1
    slot_weights: list[float] = field(default_factory=list)  # one per slot; empty = all 1.0
    noise_std: float = 0.0  # Gaussian noise on the draft's input features (not on the targets)
    # > 0: also train a rehearsed tree group pass that reads the draft's own predicted features
    # (training-time test), its loss weighted by this.
    group_pass_weight: float = 0.0
    eval_fraction: float = 0.05  # share of samples held out (by sample, seeded)
    seed: int = 0
    save_every: int = 0  # checkpoint every N steps (0: only at the end)
    keep_checkpoints: int = 2
    mixed_precision: str = "no"  # accelerate's: "no", "bf16", "fp16"

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if _not_finite(value):
                raise ValueError(f"train.{item.name} must be finite, got {value}")
        positive = ("lr", "batch_size", "epochs")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "steps",
            "warmup_steps",
            "weight_decay",
            "grad_clip",
            "noise_std",
            "group_pass_weight",
            "save_every",
            "w_ce",
            "w_smooth_l1",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"train.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"train.mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")

    def weights_for(self, k: int) -> list[float]:
        """Per-slot loss weights for a k-slot draft."""
        if not self.slot_weights:
            return [1.0] * k
        if len(self.slot_weights) != k:
            raise ValueError(f"train.slot_weights has {len(self.slot_weights)} entries but the draft has k={k} slots")
        return list(self.slot_weights)


@dataclass(frozen=True)
class RunConfig:
    draft: DraftConfig = field(default_factory=DraftConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        draft = {k: v for k, v in dataclasses.asdict(self.draft).items() if k in USER_DRAFT_KEYS}
        return {"draft": draft, "train": dataclasses.asdict(self.train)}

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        unknown_sections = sorted(set(data) - {"draft", "train"})
        if unknown_sections:
            raise ValueError(f"{source}: unknown sections {unknown_sections}; known: [draft], [train]")
        draft = _section(data, "draft", DraftConfig, USER_DRAFT_KEYS, source)
        train = _section(data, "train", TrainConfig, tuple(f.name for f in dataclasses.fields(TrainConfig)), source)
        return cls(DraftConfig(**draft), TrainConfig(**train))

    @classmethod
    def from_json(cls, path: Path) -> RunConfig:
        return cls.from_dict(json.loads(path.read_text()), str(path))


def load_config(path: str | Path | None) -> RunConfig:
    """The run configuration from a TOML file; defaults when `path` is None."""
    if path is None:
        return RunConfig()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from None
    return RunConfig.from_dict(data, str(path))


def _section(data: dict[str, Any], name: str, config: type, known: tuple[str, ...], source: str) -> dict[str, Any]:
    """Section `name` of `data`, its keys among `known` and each value of its field's type in `config`."""
    where = f"{source} [{name}]"
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ValueError(f"{where} must be a table, got {section!r}")
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {', '.join(known)}")
    hints = typing.get_type_hints(config)
    for key, value in section.items():
        if not _is_of(value, hints[key]):
            raise ValueError(f"{where}: {key} must be {_type_name(hints[key])}, got {value!r}")
        if _not_finite(value):
            raise ValueError(f"{where}: {key} must be finite, got {value!r}")
    return dict(section)


def _not_finite(value: Any) -> bool:
    """Whether a config value, or an item of a list value, is a float that is nan or infinite."""
    return any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value]))


def _is_of(value: Any, hint: Any) -> bool:
    """Whether a config value fits a field's type: an int where a float is expected, not a bool for a number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in UNIONS:
        return any(_is_of(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_is_of(v, args[0]) for v in value)
    if hint is float:
        hint = (int, float)
    return isinstance(value, hint) and not (isinstance(value, bool) and hint is not bool)


def _type_name(hint: Any) -> str:
    """A field's type as a config file gives it: None is no value there but the key left out."""
    if typing.get_origin(hint) in UNIONS:
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint) if arg is not types.NoneType)
    return hint.__name__ if isinstance(hint, type) else str(hint)
