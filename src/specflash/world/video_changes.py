"""An opt-in stage-2 loss for the video target (`--change-loss-weight`): each video token says what
changed in its cell.

Each event lies inside one frame pair (video.py), which the Qwen2.5-VL vision tower sees as one
temporal patch. Here the language model's own output head, read after the first half of its layers,
must name at every video token of a later frame pair the change in that token's grid cell within the
pair: " appears", " vanishes", the direction of an object that moved
in (" left", " right", " up", " down") or " nothing"; the cell a moved object left is not labelled (it
emptied, but nothing vanished). A narration token can then find an event by attending, in the upper
layers, to the tokens that flag one. No parameters are added: the shipped model stays the stock one.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .processing import one_token_ids
from .recipes import QWEN_MERGE, QWEN_PATCH, QWEN_TEMPORAL_PATCH, QWEN_VIDEO_SIZE
from .scenes import GRID
from .tasks import Sample
from .video import FRAMES, changed_cells
from .vision_warmup import cells_of_tokens

CHANGE_WORDS = {
    "nothing": " nothing",
    "appear": " appears",
    "disappear": " vanishes",
    "left": " left",
    "right": " right",
    "up": " up",
    "down": " down",
}
VIDEO_TOKEN_GRID = QWEN_VIDEO_SIZE // QWEN_PATCH // QWEN_MERGE


def cell_changes(sample: Sample) -> dict[int, dict[tuple[int, int], str | None]]:
    """Per frame pair with an event: cell -> the change there; a moved object's old cell -> None (left
    unsupervised: it emptied, but the object did not vanish)."""
    cells = {o.kind: o.cell for o in sample.scenes[0].objects}
    changes: dict[int, dict[tuple[int, int], str | None]] = {}
    for event in sample.events:
        pair = changes.setdefault(event.frame // QWEN_TEMPORAL_PATCH, {})
        for cell, change in changed_cells(cells, event).items():
            pair[cell] = None if change == "away" else change
        if event.action == "disappear":
            del cells[event.kind]
        elif event.cell:
            cells[event.kind] = event.cell
    return changes


def video_token_labels(sample: Sample, word_ids: dict[str, int]) -> torch.Tensor:
    """[pairs * tokens per pair]: the change word's id per video token, -100 for the first pair and
    for the old cells of moved objects."""
    changes = cell_changes(sample)
    token_cells = cells_of_tokens(VIDEO_TOKEN_GRID)
    labels = []
    for pair in range(FRAMES // QWEN_TEMPORAL_PATCH):
        for cell_index in token_cells:
            cell = (cell_index // GRID, cell_index % GRID)
            if pair == 0:
                labels.append(-100)
                continue
            change = changes.get(pair, {}).get(cell, "nothing")
            labels.append(-100 if change is None else word_ids[change])
    return torch.tensor(labels)


def change_labels(
    input_ids: torch.Tensor, samples: list[Sample], tokenizer: PreTrainedTokenizerBase, video_token_id: int
) -> torch.Tensor:
    """Labels aligned with input_ids: change words at the video tokens of video samples, -100 elsewhere."""
    word_ids = dict(zip(CHANGE_WORDS, one_token_ids(tokenizer, list(CHANGE_WORDS.values())), strict=True))
    labels = torch.full_like(input_ids, -100)
    for row, sample in enumerate(samples):
        if sample.video:
            positions = (input_ids[row] == video_token_id).nonzero().squeeze(1)
            row_labels = video_token_labels(sample, word_ids)
            if len(positions) != len(row_labels):
                raise ValueError(f"{len(positions)} video tokens in row {row}, expected {len(row_labels)}")
            labels[row, positions] = row_labels.to(labels.device)
    return labels


def change_loss(
    model: PreTrainedModel,
    hidden_states: tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    total: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of the change words, read by the model's own norm and output head after the first
    half of its language layers (hidden_states[0] is the embeddings); zero when the batch has no video.
    With `total` the summed cross-entropy is divided by it instead of averaged: a process of a
    data-parallel run passes the whole batch's count of labelled tokens."""
    counted = labels != -100
    if not counted.any():
        return hidden_states[0].new_zeros(())
    states = hidden_states[(len(hidden_states) - 1) // 2][counted]
    logits = model.lm_head(model.model.language_model.norm(states))
    if total is None:
        return torch.nn.functional.cross_entropy(logits.float(), labels[counted])
    return torch.nn.functional.cross_entropy(logits.float(), labels[counted], reduction="sum") / total
