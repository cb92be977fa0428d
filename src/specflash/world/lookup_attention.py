"""An opt-in stage-2 loss for the image targets (`--lookup-loss-weight`): a question that names objects
is answered by two attention hops, each taught to one head.

An answer to "what color is the kite?", "where is the kite?", "is there a kite?", "which image shows a
kite?" or "how many red objects are there?" must find the kite's (or the red objects') visual tokens by
what they say. Trained on the chat tasks alone, the tiny targets learn this for colors only, and
supervising the answer positions to look at the objects directly took in one run of three
(docs/world.md). Split in two, each hop is easy to learn:

- find: at each token of the question that names a kind or a color, head i of the first language
  layer attends to the visual tokens of the grid cells of image i that hold such objects, or, where
  image i holds none, to the name token itself ("found nothing");
- fetch: at every position that predicts a token of the answer, head 0 of the second layer attends to
  the question's name tokens, which now carry what the find heads read.

No parameters are added: the shipped model stays the stock one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from transformers import PreTrainedTokenizerBase

from .packing import QueriesAndKeys
from .parse import NAME_TO_KIND
from .processing import one_token_ids
from .scenes import COLORS, GRID, Scene
from .tasks import Sample
from .vision_warmup import TOKEN_GRID, cells_of_tokens

# the find hop uses head i for image i (the targets have 4 heads per layer, prompts at most 2 images)
FIND_LAYER, FETCH_LAYER, FETCH_HEAD = 0, 1, 0


class Lookup(NamedTuple):
    """One hop to teach: head `head` of layer `layer` must attend, at each query position of batch row
    `row`, to the key positions."""

    layer: int
    head: int
    row: int
    queries: torch.Tensor
    keys: torch.Tensor


def _answer_spans(labels: torch.Tensor) -> list[torch.Tensor]:
    """Positions of each run of supervised tokens (one per assistant message), in order."""
    positions = (labels != -100).nonzero().squeeze(1)
    if not len(positions):
        return []
    breaks = (positions[1:] != positions[:-1] + 1).nonzero().squeeze(1) + 1
    return list(torch.tensor_split(positions, breaks.tolist()))


def _cell_tokens(cells: set[tuple[int, int]]) -> torch.Tensor:
    """Indices, among one image's TOKEN_GRID**2 row-major tokens, of the tokens lying in `cells`."""
    wanted = {r * GRID + c for r, c in cells}
    return torch.tensor([i for i, cell in enumerate(cells_of_tokens(TOKEN_GRID)) if cell in wanted])


def _name_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[int, str]:
    """Token id -> the word it is, for every kind name and color (each is one token of the world
    tokenizer, which was trained on these texts)."""
    words = (*NAME_TO_KIND, *COLORS)
    return dict(zip(one_token_ids(tokenizer, [" " + w for w in words]), words, strict=True))


def _named_cells(scene: Scene, word: str) -> set[tuple[int, int]]:
    """The cells of the objects a word names: a kind's name, or a color."""
    if word in COLORS:
        return {o.cell for o in scene.objects if o.color == word}
    return {o.cell for o in scene.objects if o.kind == NAME_TO_KIND[word]}


def _question_lookups(
    row: int,
    sample: Sample,
    spans: list[torch.Tensor],
    ids: torch.Tensor,
    image_positions: torch.Tensor,
    names: dict[int, str],
) -> list[Lookup]:
    """The find hops of each name in the sample's questions, one per image, and the fetch hop of each
    answer to a question that names something."""
    per_image = TOKEN_GRID**2
    if len(image_positions) != per_image * len(sample.images):
        raise ValueError(f"{len(image_positions)} image tokens, expected {per_image} for each of {len(sample.images)}")
    lookups, start = [], 0
    for span in spans:
        # the question: the user turn between the previous answer and this one
        named = [p for p in range(start, int(span[0])) if int(ids[p]) in names]
        start = int(span[-1]) + 1
        for p in named:
            for i, scene in enumerate(sample.scenes):
                cells = _named_cells(scene, names[int(ids[p])])
                keys = image_positions[i * per_image + _cell_tokens(cells)] if cells else torch.tensor([p])
                lookups.append(Lookup(FIND_LAYER, i, row, torch.tensor([p]), keys))
        if named:
            lookups.append(Lookup(FETCH_LAYER, FETCH_HEAD, row, span - 1, torch.tensor(named)))
    return lookups


def lookup_targets(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    samples: list[Sample],
    tokenizer: PreTrainedTokenizerBase,
    image_token_id: int,
) -> list[Lookup]:
    """Every find and fetch hop of the batch's questions about images; captions, videos and text get
    none."""
    targets, names = [], _name_tokens(tokenizer)
    for row, sample in enumerate(samples):
        if not sample.images:
            continue
        ids, spans = input_ids[row].cpu(), _answer_spans(labels[row].cpu())
        if len(spans) != len(sample.turns):
            raise ValueError(f"{len(spans)} answers in row {row}, expected {len(sample.turns)}")
        image_positions = (ids == image_token_id).nonzero().squeeze(1)
        targets += _question_lookups(row, sample, spans, ids, image_positions, names)
    return targets


def in_row(target: Lookup, start: int) -> Lookup:
    """The target of a sample now lying in row 0 of a packed batch from position `start` on."""
    return target._replace(row=0, queries=target.queries + start, keys=target.keys + start)


def _visible(sequences: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """[queries, positions]: the keys each query attends to, causal within its own packed sample."""
    keys = torch.arange(len(sequences))
    return (keys <= queries[:, None]) & (sequences == sequences[queries][:, None])


def targeted_queries(targets: list[Lookup]) -> int:
    """How many query positions the targets teach: what lookup_loss averages over."""
    return sum(len(t.queries) for t in targets)


def lookup_loss(
    layers: tuple[QueriesAndKeys, ...], targets: list[Lookup], total: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Mean negative log of the attention mass each target's head puts on its keys, over every targeted
    query; zero when the batch has none. With `total` the sum is divided by it instead: a process of a
    data-parallel run passes the whole batch's targeted_queries."""
    if not layers or not isinstance(layers[0], QueriesAndKeys):
        raise ValueError(
            "the lookup loss needs each layer's queries and keys: run the model after use_packed_attention()"
        )
    if not targets:
        return layers[0].query.new_zeros(())
    heads, kv_heads = layers[0].query.shape[1], layers[0].key.shape[1]
    # each row's and head's slices are taken out once: indexing the whole tensors per target made every
    # target's backward fill a zero gradient of their whole size
    slices: dict[int, tuple] = {}
    losses = []
    for layer, head, row, queries, keys in targets:
        if layer >= len(layers) or head >= heads:
            raise ValueError(
                f"no head {head} in layer {layer}: the model has {len(layers)} layers of {heads} heads "
                "(the find hop needs a head per image)"
            )
        if layer not in slices:
            qk = layers[layer]
            slices[layer] = (
                [q.unbind(0) for q in qk.query.unbind(0)],
                [k.unbind(0) for k in qk.key.unbind(0)],
                qk.sequences.unbind(0),
                qk.scaling,
            )
        query, key, sequences, scaling = slices[layer]
        k = key[row][head // (heads // kv_heads)]  # grouped-query attention: heads share a key head
        q_at = queries.to(k.device)
        scores = query[row][head][q_at] @ k.T * scaling
        scores = scores.masked_fill(~_visible(sequences[row], queries).to(k.device), float("-inf"))
        losses.append(scores.logsumexp(-1) - scores[:, keys.to(k.device)].logsumexp(-1))
    losses = torch.cat(losses)
    return losses.mean() if total is None else losses.sum() / total
