"""The image targets' lookup loss: a question's names find their objects, the answer fetches the names."""

import torch

from specflash.world.lookup_attention import FETCH_HEAD, FETCH_LAYER, FIND_LAYER, lookup_loss, lookup_targets
from specflash.world.models import shipped_path
from specflash.world.parse import NAME_TO_KIND, words
from specflash.world.processing import assistant_labels, encode, load_processor, tokenizer_of
from specflash.world.scenes import COLORS, GRID
from specflash.world.tasks import make_samples
from specflash.world.vision_warmup import TOKEN_GRID, cells_of_tokens


def _inputs(name: str, samples):
    processor = load_processor(shipped_path(name))
    inputs = encode(processor, [s.messages for s in samples], [s.images for s in samples], [s.video for s in samples])
    inputs["labels"] = assistant_labels(inputs["input_ids"], tokenizer_of(processor))
    return inputs, tokenizer_of(processor)


def _named_cells(scene, word):
    return {o.cell for o in scene.objects if word in (o.color, *[n for n, k in NAME_TO_KIND.items() if k == o.kind])}


def test_each_name_finds_its_objects_in_every_image_and_each_answer_fetches_the_names():
    samples = make_samples("instruct", "eval", 16, seed=3)
    assert {len(s.images) for s in samples} == {1, 2}
    inputs, tokenizer = _inputs("world-llava-tiny", samples)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    targets = lookup_targets(inputs["input_ids"], inputs["labels"], samples, tokenizer, image_id)
    per_image, token_cells = TOKEN_GRID**2, cells_of_tokens(TOKEN_GRID)
    expected_fetches = [
        (row, turn)
        for row, s in enumerate(samples)
        for turn in s.turns
        if set(words(turn.question)) & (set(NAME_TO_KIND) | set(COLORS))
    ]
    fetches = [t for t in targets if t[0] == FETCH_LAYER]
    assert len(expected_fetches) > 5 and len(fetches) == len(expected_fetches)
    finds = [t for t in targets if t[0] == FIND_LAYER]
    found_nothing = 0
    for (_, head, row, queries, keys), (row_, turn) in zip(fetches, expected_fetches, strict=True):
        ids, labels = inputs["input_ids"][row], inputs["labels"][row]
        assert head == FETCH_HEAD and row == row_
        # the queries predict exactly the tokens of this turn's answer; the keys are its question's names
        assert (labels[queries + 1] != -100).all() and labels[queries[0]] == -100
        assert tokenizer.decode(ids[queries + 1]) == turn.answer + "<|im_end|>"
        named = [tokenizer.decode(ids[k]).strip() for k in keys]
        assert named == [w for w in words(turn.question) if w in NAME_TO_KIND or w in COLORS]
        for k, word in zip(keys, named, strict=True):
            images = [t for t in finds if t[2] == row and torch.equal(t[3], k.reshape(1))]
            assert [t[1] for t in images] == list(range(len(samples[row].scenes)))
            for (_, i, _, _, looked), scene in zip(images, samples[row].scenes, strict=True):
                cells = _named_cells(scene, word)
                if not cells:
                    found_nothing += 1
                    assert torch.equal(looked, k.reshape(1))
                    continue
                offsets = looked - int((ids == image_id).nonzero()[0]) - i * per_image
                assert (ids[looked] == image_id).all() and ((offsets >= 0) & (offsets < per_image)).all()
                assert {token_cells[int(o)] for o in offsets} == {r * GRID + c for r, c in cells}
                assert len(looked) == sum(token_cells.count(r * GRID + c) for r, c in cells)
    assert found_nothing and len(finds) > len(fetches)


def test_captions_and_videos_get_no_target():
    for family, task in (("world-llava-tiny", "caption"), ("world-qwen-tiny", "video")):
        samples = make_samples(task, "eval", 2, seed=1)
        inputs, tokenizer = _inputs(family, samples)
        image_id = tokenizer.convert_tokens_to_ids("<image>" if "llava" in family else "<|image_pad|>")
        assert lookup_targets(inputs["input_ids"], inputs["labels"], samples, tokenizer, image_id) == []


def test_loss_is_low_when_each_head_looks_at_its_keys():
    layers = tuple(torch.full((1, 4, 6, 6), 1 / 6) for _ in range(4))
    targets = [(0, 1, 0, torch.tensor([3]), torch.tensor([1])), (1, 0, 0, torch.tensor([4, 5]), torch.tensor([1, 2]))]
    spread = lookup_loss(layers, targets)
    layers[0][0, 1, 3] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    layers[1][0, 0, 4:] = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    assert lookup_loss(layers, targets).item() < 1e-5 < spread.item()
    assert lookup_loss(layers, []).item() == 0
