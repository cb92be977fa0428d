"""Stage 1 of image-target training: a supervised warm-up of the vision tower and projector.

A temporary linear head reads each visual token and predicts the kind, color and size of the object in
the 3x3 grid cell the token lies in (or "empty") and that cell's row and column. After it, every token
the language model receives says what lies there and where: a question that names an object can find
its tokens by what they say, and stage 2 (the chat tasks) only has to learn to read them. The
Qwen2.5-VL target also warms up on frame pairs, the temporal patches of its videos, most of them with
an event inside (video.py): a second head reads what the cell held in the first frame and how it
changed, so a video token also says what happened in its cell. The heads are thrown away; the shipped
model is the stock architecture.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import BaseImageProcessor, PreTrainedModel

from ..schedule import warmup_cosine
from .data_parallel import SINGLE, Group
from .processing import video_pixels
from .render import render_scene
from .scenes import COLORS, GRID, KINDS, SIZES, Scene, sample_scene
from .video import DIRECTIONS, Event, apply_event, changed_cells

TOKEN_GRID = 8  # visual tokens per side of a world image (64 per image)
# kind, color, size (index 0 = empty cell), then the cell's row and column
HEADS = (len(KINDS) + 1, len(COLORS) + 1, len(SIZES) + 1, GRID, GRID)
# what a cell's object did within a frame pair: the directions are those of an object that moved in
CHANGES = ("nothing", "appear", "disappear", *DIRECTIONS, "away")
# frame pairs: the first frame's kind, color, size (as HEADS) and the change
CHANGE_HEADS = (*HEADS[:3], len(CHANGES))
EVENT_SHARE = 0.75  # of warm-up frame pairs; the rest are stills, as a video's first pair is
WARMUP_BATCH = 32  # images (or frame pairs) per warm-up step
# The change head's class weights: a change weighs 4 times "nothing". About one frame-pair token in nine
# lies in a changed cell; unweighted, the head read 0.53 to 0.68 of the changes right, at 4 (half way to
# balancing the classes; the one weight tried) 0.98 (docs/world.md, session 19).
CHANGE_CLASS_WEIGHTS = torch.tensor([1.0 if change == "nothing" else 4.0 for change in CHANGES])


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


def change_labels(before: Scene, event: Event | None, token_grid: int) -> torch.Tensor:
    """[token_grid**2, 4]: per visual token of a frame pair, the kind, color, size index (+1, 0 for
    empty) its cell held in the first frame and the index in CHANGES of what happened there."""
    changes = torch.zeros(GRID * GRID, dtype=torch.long)
    if event is not None:
        cells = {o.kind: o.cell for o in before.objects}
        for (r, c), change in changed_cells(cells, event).items():
            changes[r * GRID + c] = CHANGES.index(change)
    labels = torch.cat([cell_labels(before)[:, :3], changes[:, None]], dim=1)
    return labels[cells_of_tokens(token_grid)]


def visual_tokens(model, family: str, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, tokens, D]: what the language model receives for each image (or video), row-major."""
    if family == "llava":
        feats = model.model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
    elif "pixel_values_videos" in pixels:
        feats = model.model.get_video_features(pixels["pixel_values_videos"], pixels["video_grid_thw"]).pooler_output
    else:
        feats = model.model.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"]).pooler_output
    feats = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats
    return feats.reshape(feats.shape[0], -1, feats.shape[-1])


def vision_parameters(model, family: str) -> list[nn.Parameter]:
    parts = [model.model.vision_tower, model.model.multi_modal_projector] if family == "llava" else [model.model.visual]
    return [p for part in parts for p in part.parameters()]


def projector_parameters(model, family: str) -> list[nn.Parameter]:
    """The part of the vision side that maps its features into the language model: LLaVA's projector,
    Qwen2.5-VL's patch merger."""
    part = model.model.multi_modal_projector if family == "llava" else model.model.visual.merger
    return list(part.parameters())


def _square(tokens: torch.Tensor) -> int:
    grid = math.isqrt(tokens.shape[1])
    if grid * grid != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} visual tokens per image do not form a square grid")
    return grid


def _logits_and_labels(model, family, head, image_processor, scenes):
    """Head logits (split per label) and labels for every visual token of the scenes' images."""
    device = next(model.parameters()).device
    tokens = visual_tokens(
        model, family, image_processor(images=[render_scene(s) for s in scenes], return_tensors="pt").to(device)
    )
    grid = _square(tokens)
    labels = torch.stack([token_labels(s, grid) for s in scenes]).to(device)
    return head(tokens).split(HEADS, dim=-1), labels


def _pair_logits_and_labels(model, head, change_head, image_processor, pairs):
    """As _logits_and_labels for frame pairs (before, event or None, after), read as videos: the head's
    labels are those of the second frame, the change head's those of the first and the change."""
    device = next(model.parameters()).device
    encoded = [video_pixels(image_processor, [render_scene(before), render_scene(after)]) for before, _, after in pairs]
    pixels = {
        "pixel_values_videos": torch.cat([e[0] for e in encoded]).to(device),
        "video_grid_thw": torch.tensor([e[1] for e in encoded], device=device),
    }
    tokens = visual_tokens(model, "qwen", pixels)
    grid = _square(tokens)
    labels = torch.stack([token_labels(after, grid) for _, _, after in pairs]).to(device)
    changes = torch.stack([change_labels(before, event, grid) for before, event, _ in pairs]).to(device)
    return head(tokens).split(HEADS, dim=-1), labels, change_head(tokens).split(CHANGE_HEADS, dim=-1), changes


def _scenes(split: str, seed: int, indices: Sequence[int]) -> list[Scene]:
    return [sample_scene(random.Random(f"vision/{split}/{seed}/{i}")) for i in indices]


def _pairs(split: str, seed: int, indices: Sequence[int]) -> list[tuple[Scene, Event | None, Scene]]:
    """Seeded frame pairs (before, event, after); a share of 1 - EVENT_SHARE are stills (no event)."""
    pairs = []
    for i in indices:
        rng = random.Random(f"vision-pairs/{split}/{seed}/{i}")
        before = sample_scene(rng)
        after, event = apply_event(rng, before, 1) if rng.random() < EVENT_SHARE else (before, None)
        pairs.append((before, event, after))
    return pairs


def _cross_entropy(logits: tuple[torch.Tensor, ...], labels: torch.Tensor) -> torch.Tensor:
    """The heads' cross-entropies summed (head i reads labels[..., i])."""
    return sum(nn.functional.cross_entropy(lg.flatten(0, 1), labels[..., i].flatten()) for i, lg in enumerate(logits))


def _change_loss(logits: torch.Tensor, changes: torch.Tensor, weights: torch.Tensor, group: Group) -> torch.Tensor:
    """The change head's cross-entropy with class `weights`: a weighted mean over the whole batch, so in a
    data-parallel group this process's weighted sum over the summed weights of all processes' tokens
    (a weighted mean over one share, unlike a plain mean, is not that share's part of the batch's)."""
    total = group.total(weights[changes].sum())
    return nn.functional.cross_entropy(logits.flatten(0, 1), changes.flatten(), weight=weights, reduction="sum") / total


def warmup_vision(
    model: PreTrainedModel,
    family: str,
    image_processor: BaseImageProcessor,
    seed: int,
    steps: int,
    batch: int = WARMUP_BATCH,
    lr: float = 3e-3,
    on_step: Callable[[int, float], None] | None = None,
    eval_scenes: int = 256,
    group: Group = SINGLE,
) -> dict[str, float]:
    """Train the vision side for `steps` steps on seeded scenes (split train); the Qwen2.5-VL target
    alternates still images with frame pairs. Returns the last loss and, on `eval_scenes` held-out
    scenes and pairs (split eval), the head's kind accuracy over all tokens and over the tokens of
    occupied cells (most cells are empty), and for frame pairs the change head's accuracy over the
    tokens of cells that changed and over those of cells that did not. In a data-parallel group each
    process trains on its share of every batch (every process evaluates all of the held-out scenes)."""
    device = next(model.parameters()).device
    head = nn.Linear(model.config.text_config.hidden_size, sum(HEADS)).to(device)
    params = vision_parameters(model, family) + list(head.parameters())
    pairs = family == "qwen"
    if pairs:
        change_head = nn.Linear(model.config.text_config.hidden_size, sum(CHANGE_HEADS)).to(device)
        change_weights = CHANGE_CLASS_WEIGHTS.to(device)
        params += list(change_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    loss_value = float("nan")
    for step in range(steps):
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr * warmup_cosine(step, steps, warmup=50)
        indices = group.share(range(step * batch, (step + 1) * batch))
        # every image has as many tokens, so a mean over this share times `share` is its part of the batch's
        share = len(indices) / batch
        if pairs and step % 2:
            logits, labels, change_logits, changes = _pair_logits_and_labels(
                model, head, change_head, image_processor, _pairs("train", seed, indices)
            )
            *first_frame, change = change_logits
            loss = share * (_cross_entropy(logits, labels) + _cross_entropy(first_frame, changes))
            loss = loss + _change_loss(change, changes[..., -1], change_weights, group)
        else:
            scenes = _scenes("train", seed, indices)
            loss = share * _cross_entropy(*_logits_and_labels(model, family, head, image_processor, scenes))
        loss.backward()
        loss_value = group.sum_gradients(params, loss)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step:
            on_step(step, loss_value)
    kinds, occupied_kinds, changed, unchanged = _Accuracy(), _Accuracy(), _Accuracy(), _Accuracy()
    model.eval()
    with torch.no_grad():
        for start in range(0, eval_scenes, batch):
            count = min(batch, eval_scenes - start)
            scenes = _scenes("eval", seed, range(start, start + count))
            outputs = [_logits_and_labels(model, family, head, image_processor, scenes)]
            if pairs:
                *read, change_logits, changes = _pair_logits_and_labels(
                    model, head, change_head, image_processor, _pairs("eval", seed, range(start, start + count))
                )
                outputs.append(read)
                change_hits = change_logits[-1].argmax(-1) == changes[..., -1]
                changed.add(change_hits, changes[..., -1] > 0)
                unchanged.add(change_hits, changes[..., -1] == 0)
            for logits, labels in outputs:
                hits = logits[0].argmax(-1) == labels[..., 0]
                kinds.add(hits, torch.ones_like(hits))
                occupied_kinds.add(hits, labels[..., 0] > 0)
    model.train()
    result = {
        "loss": loss_value,
        "token_kind_accuracy": kinds.value(),
        "occupied_token_kind_accuracy": occupied_kinds.value(),
    }
    if pairs:
        result["changed_token_accuracy"] = changed.value()
        result["unchanged_token_accuracy"] = unchanged.value()
    return result


class _Accuracy:
    """Hits over the tokens a mask selects, summed over batches."""

    def __init__(self) -> None:
        self.right = self.total = 0

    def add(self, hits: torch.Tensor, mask: torch.Tensor) -> None:
        self.right += int(hits[mask].sum())
        self.total += int(mask.sum())

    def value(self) -> float:
        return self.right / max(1, self.total)
