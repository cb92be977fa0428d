"""Stage 1 of image-target training: a supervised warm-up of the vision tower and projector.

A temporary linear head reads each visual token and predicts the kind, color and size of the object in
the 3x3 grid cell the token lies in (or "empty") and that cell's row and column. After it, every token
the language model receives says what lies there and where: a question that names an object can find
its tokens by what they say, and stage 2 (the chat tasks) only has to learn to read them. The head is
thrown away; the shipped model is the stock architecture.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
from torch import nn
from transformers import BaseImageProcessor, PreTrainedModel

from ..schedule import warmup_cosine
from .processing import video_frames
from .render import render_scene
from .scenes import COLORS, GRID, KINDS, SIZES, Scene, sample_scene

TOKEN_GRID = 8  # visual tokens per side of a world image (64 per image)
# kind, color, size (index 0 = empty cell), then the cell's row and column
HEADS = (len(KINDS) + 1, len(COLORS) + 1, len(SIZES) + 1, GRID, GRID)


def _cell_span(token: int, token_grid: int) -> int:
    """The grid row (or column) that a token row (or column) has its center in."""
    return int((token + 0.5) / token_grid * GRID)


def cells_of_tokens(token_grid: int) -> list[int]:
    """Row-major cell index of each token of a token_grid x token_grid image."""
    return [
        _cell_span(row, token_grid) * GRID + _cell_span(col, token_grid)
        for row in range(token_grid)
        for col in range(token_grid)
    ]


def cell_labels(scene: Scene) -> torch.Tensor:
    """[GRID*GRID, 5]: kind, color, size index (+1) per cell, 0 for empty cells; the cell's row, column."""
    labels = torch.zeros(GRID * GRID, len(HEADS), dtype=torch.long)
    labels[:, 3] = torch.arange(GRID * GRID) // GRID
    labels[:, 4] = torch.arange(GRID * GRID) % GRID
    for obj in scene.objects:
        r, c = obj.cell
        labels[r * GRID + c, :3] = torch.tensor(
            [KINDS.index(obj.kind) + 1, tuple(COLORS).index(obj.color) + 1, SIZES.index(obj.size) + 1]
        )
    return labels


def token_labels(scene: Scene, token_grid: int = TOKEN_GRID) -> torch.Tensor:
    """[token_grid**2, 5]: the labels of the cell each visual token (row-major) lies in."""
    return cell_labels(scene)[cells_of_tokens(token_grid)]


def visual_tokens(model, family: str, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, tokens, D]: what the language model receives for each image, row-major."""
    if family == "llava":
        feats = model.model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
    else:
        feats = model.model.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"]).pooler_output
    feats = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats
    return feats.reshape(feats.shape[0], -1, feats.shape[-1])


def vision_parameters(model, family: str) -> list[nn.Parameter]:
    parts = [model.model.vision_tower, model.model.multi_modal_projector] if family == "llava" else [model.model.visual]
    return [p for part in parts for p in part.parameters()]


def _logits_and_labels(model, family, head, image_processor, scenes, small: bool):
    """Head logits (split per label) and labels for every visual token of the scenes' images."""
    device = next(model.parameters()).device
    images = [render_scene(s) for s in scenes]
    if small:
        images = video_frames(images)
    tokens = visual_tokens(model, family, image_processor(images=images, return_tensors="pt").to(device))
    grid = math.isqrt(tokens.shape[1])
    if grid * grid != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} visual tokens per image do not form a square grid")
    labels = torch.stack([token_labels(s, grid) for s in scenes]).to(device)
    return head(tokens).split(HEADS, dim=-1), labels


def _scenes(split: str, seed: int, start: int, count: int) -> list[Scene]:
    return [sample_scene(random.Random(f"vision/{split}/{seed}/{i}")) for i in range(start, start + count)]


def warmup_vision(
    model: PreTrainedModel,
    family: str,
    image_processor: BaseImageProcessor,
    seed: int,
    steps: int,
    batch: int = 32,
    lr: float = 3e-3,
    on_step: Callable[[int, float], None] | None = None,
    eval_scenes: int = 256,
) -> dict[str, float]:
    """Train the vision side for `steps` steps on seeded scenes (split train). Returns the last loss and
    the head's kind accuracy on the tokens of `eval_scenes` held-out scenes (split eval): over all
    tokens, and over the tokens of occupied cells (most cells are empty)."""
    head = nn.Linear(model.config.text_config.hidden_size, sum(HEADS)).to(next(model.parameters()).device)
    params = vision_parameters(model, family) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    loss_value = float("nan")
    # A Qwen video's frame pairs are smaller images than its still images: warm up on both sizes.
    small_steps = (False, True) if family == "qwen" else (False,)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup_cosine(step, steps, warmup=50)
        scenes = _scenes("train", seed, step * batch, batch)
        logits, labels = _logits_and_labels(
            model, family, head, image_processor, scenes, small_steps[step % len(small_steps)]
        )
        loss = sum(
            nn.functional.cross_entropy(lg.flatten(0, 1), labels[..., i].flatten()) for i, lg in enumerate(logits)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if on_step:
            on_step(step, loss_value)
    right = total = right_occupied = occupied = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, eval_scenes, batch):
            scenes = _scenes("eval", seed, start, min(batch, eval_scenes - start))
            for small in small_steps:
                logits, labels = _logits_and_labels(model, family, head, image_processor, scenes, small)
                hits, kinds = logits[0].argmax(-1) == labels[..., 0], labels[..., 0] > 0
                right, total = right + int(hits.sum()), total + hits.numel()
                right_occupied, occupied = right_occupied + int(hits[kinds].sum()), occupied + int(kinds.sum())
    model.train()
    return {
        "loss": loss_value,
        "token_kind_accuracy": right / max(1, total),
        "occupied_token_kind_accuracy": right_occupied / max(1, occupied),
    }
