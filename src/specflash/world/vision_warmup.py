"""Stage 1 of image-target training: a supervised warm-up of the vision tower and projector.

A temporary linear head reads, for each of the 3x3 grid cells, the mean of the visual tokens over
that cell and predicts the cell's object kind, color and size (or "empty"). After it, the tokens the
language model receives already say what lies where, and stage 2 (the chat tasks) only has to learn to
read them. The head is thrown away; the shipped model is the stock architecture.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from ..schedule import warmup_cosine
from .render import render_scene
from .scenes import COLORS, GRID, KINDS, SIZES, Scene, sample_scene

TOKEN_GRID = 8  # visual tokens per side for every world image (64 per image)
# token rows/cols whose centers fall inside each grid cell
CELL_SPANS = tuple(
    tuple(t for t in range(TOKEN_GRID) if c / GRID <= (t + 0.5) / TOKEN_GRID < (c + 1) / GRID) for c in range(GRID)
)
HEADS = (len(KINDS) + 1, len(COLORS) + 1, len(SIZES) + 1)  # index 0 = empty cell


def cell_labels(scene: Scene) -> torch.Tensor:
    """[GRID*GRID, 3]: kind, color, size index (+1) per cell, 0 for empty cells."""
    labels = torch.zeros(GRID * GRID, 3, dtype=torch.long)
    for obj in scene.objects:
        r, c = obj.cell
        labels[r * GRID + c] = torch.tensor(
            [KINDS.index(obj.kind) + 1, tuple(COLORS).index(obj.color) + 1, SIZES.index(obj.size) + 1]
        )
    return labels


def visual_tokens(model, family: str, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, TOKEN_GRID, TOKEN_GRID, D]: what the language model receives for each image."""
    if family == "llava":
        feats = model.model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
    else:
        feats = model.model.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"]).pooler_output
    feats = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats
    return feats.reshape(feats.shape[0], TOKEN_GRID, TOKEN_GRID, -1)


def cell_features(tokens: torch.Tensor) -> torch.Tensor:
    """[B, GRID*GRID, D]: mean token per cell."""
    cells = [tokens[:, list(rows)][:, :, list(cols)].mean(dim=(1, 2)) for rows in CELL_SPANS for cols in CELL_SPANS]
    return torch.stack(cells, dim=1)


def vision_parameters(model, family: str) -> list[nn.Parameter]:
    parts = [model.model.vision_tower, model.model.multi_modal_projector] if family == "llava" else [model.model.visual]
    return [p for part in parts for p in part.parameters()]


def warmup_vision(
    model, family: str, image_processor, seed: int, steps: int, batch: int = 32, lr: float = 3e-3, on_step=None
) -> float:
    """Train the vision side for `steps` steps on seeded scenes (split train); returns the last loss."""
    dim = model.config.text_config.hidden_size
    device = next(model.parameters()).device
    head = nn.Linear(dim, sum(HEADS)).to(device)
    params = vision_parameters(model, family) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    loss_value = float("nan")
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup_cosine(step, steps, warmup=50)
        scenes = [sample_scene(random.Random(f"vision/train/{seed}/{step * batch + i}")) for i in range(batch)]
        pixels = image_processor(images=[render_scene(s) for s in scenes], return_tensors="pt").to(device)
        logits = head(cell_features(visual_tokens(model, family, pixels))).split(HEADS, dim=-1)
        labels = torch.stack([cell_labels(s) for s in scenes]).to(device)
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
    return loss_value
