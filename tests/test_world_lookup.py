"""The image targets' lookup loss: while answering about named objects, one head looks at them."""

import torch

from specflash.world.lookup_attention import LOOKUP_HEAD, lookup_loss, lookup_targets
from specflash.world.models import shipped_path
from specflash.world.parse import kinds_named
from specflash.world.processing import assistant_labels, encode, load_processor, tokenizer_of
from specflash.world.scenes import GRID
from specflash.world.tasks import make_samples
from specflash.world.vision_warmup import TOKEN_GRID, cells_of_tokens


def _inputs(name: str, samples):
    processor = load_processor(shipped_path(name))
    inputs = encode(processor, [s.messages for s in samples], [s.images for s in samples], [s.video for s in samples])
    inputs["labels"] = assistant_labels(inputs["input_ids"], tokenizer_of(processor))
    return inputs, tokenizer_of(processor)


def test_targets_point_from_each_answer_to_the_named_objects_in_every_image():
    samples = make_samples("instruct", "eval", 16, seed=3)
    assert {len(s.images) for s in samples} == {1, 2}
    inputs, tokenizer = _inputs("world-llava-tiny", samples)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    targets = lookup_targets(inputs["input_ids"], inputs["labels"], samples, tokenizer, image_id)
    named = [
        (row, t, cells)
        for row, s in enumerate(samples)
        for t in s.turns
        if any(cells := [{o.cell for o in map(sc.find, kinds_named(t.question)) if o} for sc in s.scenes])
    ]
    assert len(named) > 5 and [r for r, _, _ in named] == [r for r, _, _ in targets]
    per_image, token_cells = TOKEN_GRID**2, cells_of_tokens(TOKEN_GRID)
    for (row, queries, keys), (_, turn, cells) in zip(targets, named, strict=True):
        ids, labels = inputs["input_ids"][row], inputs["labels"][row]
        # the queries predict exactly the tokens of this turn's answer: all of them, and nothing else
        assert (labels[queries + 1] != -100).all() and labels[queries[0]] == -100
        assert labels[queries[-1] + 2] == -100 and torch.equal(queries, torch.arange(queries[0], queries[-1] + 1))
        assert tokenizer.decode(ids[queries + 1]) == turn.answer + "<|im_end|>"
        assert (ids[keys] == image_id).all()
        offsets = keys - int((ids == image_id).nonzero()[0])
        looked = [{token_cells[int(o) % per_image] for o in offsets if o // per_image == i} for i in range(2)]
        assert looked[: len(cells)] == [{r * GRID + c for r, c in image} for image in cells]
        assert len(keys) == sum(token_cells.count(r * GRID + c) for image in cells for r, c in image)


def test_captions_get_no_target():
    samples = make_samples("caption", "eval", 2, seed=1)
    inputs, tokenizer = _inputs("world-llava-tiny", samples)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert lookup_targets(inputs["input_ids"], inputs["labels"], samples, tokenizer, image_id) == []


def test_loss_is_low_when_the_head_looks_at_the_object():
    weights = torch.full((1, 4, 6, 6), 1 / 6)
    layers = (weights, weights, weights.clone(), weights)
    targets = [(0, torch.tensor([4, 5]), torch.tensor([1, 2]))]
    spread = lookup_loss(layers, targets)
    layers[2][0, LOOKUP_HEAD, 4:, :] = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    assert lookup_loss(layers, targets).item() < 1e-5 < spread.item()
    assert lookup_loss(layers, []).item() == 0


def test_each_event_sentence_of_a_narration_looks_at_its_cells_around_the_change():
    from specflash.world.recipes import QWEN_TEMPORAL_PATCH
    from specflash.world.video_changes import VIDEO_TOKEN_GRID, cell_changes

    samples = make_samples("video", "train", 6, seed=2)
    inputs, tokenizer = _inputs("world-qwen-tiny", samples)
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    targets = lookup_targets(inputs["input_ids"], inputs["labels"], samples, tokenizer, -1, video_id)
    assert len(targets) == sum(len(s.events) for s in samples)
    per_pair, token_cells = VIDEO_TOKEN_GRID**2, cells_of_tokens(VIDEO_TOKEN_GRID)
    for (row, queries, keys), event in zip(targets, [e for s in samples for e in s.events], strict=True):
        ids = inputs["input_ids"][row]
        sentence = tokenizer.decode(ids[queries + 1])
        assert sentence.strip().endswith(".") and kinds_named(sentence)[0] == event.kind, sentence
        offsets = keys - int((ids == video_id).nonzero()[0])
        pair = event.frame // QWEN_TEMPORAL_PATCH
        assert {int(o) // per_pair for o in offsets} == {pair - 1, pair}
        cells = {token_cells[int(o) % per_pair] for o in offsets}
        assert cells == {r * GRID + c for r, c in cell_changes(samples[row])[pair]}
