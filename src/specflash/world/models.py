"""The world targets shipped inside the package (the embedded default)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import PreTrainedModel

from .build import MODEL_CLASSES, family_of
from .processing import load_processor

SHIPPED: tuple[str, ...] = ("world-llava-tiny", "world-qwen-tiny", "world-text-tiny")
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
SHIPPED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "special_tokens_map.json",
    "training_state.json",
)


def shipped_path(name: str) -> Path:
    """Directory of a shipped world model; ValueError for an unknown name."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped model {name!r}; known: {', '.join(SHIPPED)}")
    return ASSETS / name


def resolve(target: str | Path) -> Path:
    """A shipped name or a directory."""
    return shipped_path(str(target)) if str(target) in SHIPPED else Path(target)


def is_world_model(path: Path) -> bool:
    """Whether `specflash world train` made the model in `path` (shipped or not): its processor is then
    the world's own, which also runs without torchvision."""
    try:
        state = json.loads((path / "training_state.json").read_text())
    except (OSError, ValueError):
        return False
    config = state.get("config") if isinstance(state, dict) else None
    return isinstance(config, dict) and config.get("name") in SHIPPED


FAMILY_OF_MODEL_TYPE = {"llava": "llava", "qwen2_5_vl": "qwen", "llama": "text"}


def family_for(path: Path) -> str:
    """The world family of a model directory; ValueError for a model no world recipe makes."""
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise ValueError(f"{path} is not a world target model (model type {model_type!r})")
    return FAMILY_OF_MODEL_TYPE[model_type]


def trained_path(target: str | Path) -> Path:
    """resolve(target), or ValueError when no trained model is there (a run still training has none yet)."""
    path = resolve(target)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ValueError(f"{path} holds no trained world model (config.json and model.safetensors)")
    return path


def load(target: str | Path) -> tuple[PreTrainedModel, object, str]:
    """(model in eval mode, processor, family) for a shipped name or a trained model directory."""
    path = trained_path(target)
    family = family_for(path)
    model = MODEL_CLASSES[family].from_pretrained(path, dtype=torch.float32).eval()
    return model, load_processor(path), family


def ship(trained_dir: Path, name: str) -> Path:
    """Copy a trained model directory (without checkpoints) into the package assets."""
    family_of(name)
    dest = ASSETS / name
    dest.mkdir(parents=True, exist_ok=True)
    for file in SHIPPED_FILES:
        if (trained_dir / file).exists():
            shutil.copy2(trained_dir / file, dest / file)
    return dest
