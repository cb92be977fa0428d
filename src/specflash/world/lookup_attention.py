"""An opt-in stage-2 loss for the image and video targets (`--lookup-loss-weight`): while the target
talks about objects of its input, one attention head looks at them.

An answer to "what color is the kite?", "where is the kite?" or "is there a kite?" must find the kite's
visual tokens by what they say. Trained on the chat tasks alone, the targets learn this lookup for
colors only: at the first place word of a where-answer, and at the yes or no of an existence answer,
the heads that find the named object for a color answer look elsewhere (docs/world.md). A video
narration must likewise find, for its k-th event sentence, the cells that changed between two frame
pairs. Here head LOOKUP_HEAD of the middle language layer (index 2 of 0-3 in the tiny targets) must
put its attention, at every position that predicts a token of such an answer, on the visual tokens of
the objects its question names (in every image that holds one), or, at every position that predicts a
token of an event sentence, on the tokens of the event's cells in the frame pairs before and after the
change. No parameters are added: the shipped model stays the stock one.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from .parse import kinds_named
from .recipes import QWEN_TEMPORAL_PATCH
from .scenes import GRID
from .tasks import Sample
from .video_changes import VIDEO_TOKEN_GRID, cell_changes
from .vision_warmup import TOKEN_GRID, cells_of_tokens

LOOKUP_HEAD = 0  # which head of the middle layer is taught the lookup

Lookup = tuple[int, torch.Tensor, torch.Tensor]  # batch row, query positions, key positions


def _answer_spans(labels: torch.Tensor) -> list[torch.Tensor]:
    """Positions of each run of supervised tokens (one per assistant message), in order."""
    positions = (labels != -100).nonzero().squeeze(1)
    if not len(positions):
        return []
    breaks = (positions[1:] != positions[:-1] + 1).nonzero().squeeze(1) + 1
    return list(torch.tensor_split(positions, breaks.tolist()))


def _cell_tokens(token_grid: int, cells: set[tuple[int, int]]) -> torch.Tensor:
    """Indices, among one image's token_grid**2 row-major tokens, of the tokens lying in `cells`."""
    wanted = {r * GRID + c for r, c in cells}
    return torch.tensor([i for i, cell in enumerate(cells_of_tokens(token_grid)) if cell in wanted])


def _image_lookups(
    sample: Sample, spans: list[torch.Tensor], image_positions: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(queries, keys) per answer to a question that names objects of its images: the tokens of those
    objects in every image that holds one."""
    per_image = TOKEN_GRID**2
    if len(image_positions) != per_image * len(sample.images):
        raise ValueError(f"{len(image_positions)} image tokens, expected {per_image} per image")
    lookups = []
    for turn, span in zip(sample.turns, spans, strict=True):
        kinds = kinds_named(turn.question)
        keys = []
        for i, scene in enumerate(sample.scenes):
            cells = {obj.cell for obj in map(scene.find, kinds) if obj is not None}
            if cells:
                keys.append(image_positions[i * per_image + _cell_tokens(TOKEN_GRID, cells)])
        if keys:
            lookups.append((span - 1, torch.cat(keys)))
    return lookups


def _video_lookups(
    sample: Sample,
    span: torch.Tensor,
    ids: torch.Tensor,
    video_positions: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(queries, keys) per event sentence of a narration: the sentence's tokens, and the tokens of the
    event's cells in the frame pairs before and after the change."""
    per_pair = VIDEO_TOKEN_GRID**2
    if len(video_positions) % per_pair:
        raise ValueError(f"{len(video_positions)} video tokens do not form frame pairs of {per_pair}")
    answer = ids[span]
    period_ids = [i for i in answer.unique().tolist() if tokenizer.decode([i]).strip() == "."]
    periods = torch.isin(answer, torch.tensor(period_ids, dtype=answer.dtype))
    # sentence of each answer token: the opening state is sentence 0, event k is sentence k + 1
    sentence = torch.cumsum(periods, 0) - periods.long()
    changes, lookups = cell_changes(sample), []
    for k, event in enumerate(sample.events):
        pair = event.frame // QWEN_TEMPORAL_PATCH  # events fall in distinct pairs (video.EVENT_FRAMES)
        tokens = _cell_tokens(VIDEO_TOKEN_GRID, set(changes[pair]))
        keys = torch.cat([video_positions[p * per_pair + tokens] for p in (pair - 1, pair)])
        queries = span[sentence == k + 1] - 1
        if len(queries):
            lookups.append((queries, keys))
    return lookups


def lookup_targets(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    samples: list[Sample],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
    video_token_id: int | None = None,
) -> list[Lookup]:
    """The (row, queries, keys) of every answer that talks about objects of its input: an answer to a
    question naming objects of its images, and each event sentence of a video narration. Queries are
    the positions that predict the answer's tokens."""
    targets = []
    for row, sample in enumerate(samples):
        ids, spans = input_ids[row].cpu(), _answer_spans(labels[row].cpu())
        if len(spans) != len(sample.turns):
            raise ValueError(f"{len(spans)} answers in row {row}, expected {len(sample.turns)}")
        if sample.video and video_token_id is not None:
            video_positions = (ids == video_token_id).nonzero().squeeze(1)
            lookups = _video_lookups(sample, spans[0], ids, video_positions, tokenizer)
        elif sample.images:
            lookups = _image_lookups(sample, spans, (ids == image_token_id).nonzero().squeeze(1))
        else:
            lookups = []
        targets += [(row, queries, keys) for queries, keys in lookups]
    return targets


def lookup_loss(attentions: tuple[torch.Tensor, ...], targets: list[Lookup]) -> torch.Tensor:
    """Mean negative log of the attention mass that LOOKUP_HEAD of the middle layer puts on the named
    objects' tokens, over every targeted query; zero when the batch has none."""
    if not attentions or attentions[0] is None:
        raise ValueError("the lookup loss needs attention weights: run the language model with eager attention")
    weights = attentions[len(attentions) // 2]  # [batch, heads, queries, keys]
    if not targets:
        return weights.new_zeros(())
    losses = []
    for row, queries, keys in targets:
        head = weights[row, LOOKUP_HEAD]
        mass = head[queries.to(head.device)][:, keys.to(head.device)].sum(-1)
        losses.append(-torch.log(mass.clamp_min(1e-6)))
    return torch.cat(losses).mean()
