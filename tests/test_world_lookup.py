"""The image targets' lookup loss: a question's names find their objects, the answer fetches the names."""

import math

import pytest
import torch
from transformers import AutoModelForImageTextToText

from specflash.world.lookup_attention import (
    FETCH_HEAD,
    FETCH_LAYER,
    FIND_LAYER,
    Lookup,
    in_row,
    lookup_loss,
    lookup_targets,
)
from specflash.world.models import shipped_path
from specflash.world.packing import QueriesAndKeys, use_packed_attention
from specflash.world.parse import NAME_TO_KIND, words
from specflash.world.processing import assistant_labels, encode, load_processor, tokenizer_of
from specflash.world.scenes import COLORS, GRID
from specflash.world.tasks import make_samples
from specflash.world.vision_warmup import TOKEN_GRID, cells_of_tokens

IMAGE_TOKEN = {"world-llava-tiny": "<image>", "world-qwen-tiny": "<|image_pad|>"}


def _targets(name: str, samples):
    processor = load_processor(shipped_path(name))
    inputs = encode(processor, [s.messages for s in samples], [s.images for s in samples], [s.video for s in samples])
    inputs["labels"] = assistant_labels(inputs["input_ids"], tokenizer_of(processor))
    tokenizer = tokenizer_of(processor)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN[name])
    return (
        inputs,
        tokenizer,
        image_id,
        lookup_targets(inputs["input_ids"], inputs["labels"], samples, tokenizer, image_id),
    )


def _named_cells(scene, word):
    return {o.cell for o in scene.objects if word == o.color or NAME_TO_KIND.get(word) == o.kind}


@pytest.mark.parametrize("name", list(IMAGE_TOKEN))
def test_each_name_finds_its_objects_in_every_image_and_each_answer_fetches_the_names(name):
    samples = make_samples("instruct", "eval", 16, seed=3)
    assert {len(s.images) for s in samples} == {1, 2}
    inputs, tokenizer, image_id, targets = _targets(name, samples)
    per_image, token_cells = TOKEN_GRID**2, cells_of_tokens(TOKEN_GRID)
    expected_fetches = [
        (row, turn)
        for row, s in enumerate(samples)
        for turn in s.turns
        if set(words(turn.question)) & (set(NAME_TO_KIND) | set(COLORS))
    ]
    fetches = [t for t in targets if t.layer == FETCH_LAYER]
    finds = [t for t in targets if t.layer == FIND_LAYER]
    assert len(expected_fetches) > 5 and len(fetches) == len(expected_fetches)
    # nothing else: one find per name and image
    assert len(targets) == len(finds) + len(fetches)
    assert len(finds) == sum(len(f.keys) * len(samples[f.row].scenes) for f in fetches)
    found_nothing = 0
    for fetch, (row, turn) in zip(fetches, expected_fetches, strict=True):
        ids, labels = inputs["input_ids"][row], inputs["labels"][row]
        assert fetch.head == FETCH_HEAD and fetch.row == row
        # the queries predict exactly the tokens of this turn's answer; the keys are its question's names
        assert (labels[fetch.queries + 1] != -100).all() and labels[fetch.queries[0]] == -100
        assert tokenizer.decode(ids[fetch.queries + 1]) == turn.answer + "<|im_end|>"
        named = [tokenizer.decode(ids[k]).strip() for k in fetch.keys]
        assert named == [w for w in words(turn.question) if w in NAME_TO_KIND or w in COLORS]
        for k, word in zip(fetch.keys, named, strict=True):
            images = [t for t in finds if t.row == row and torch.equal(t.queries, k.reshape(1))]
            assert [t.head for t in images] == list(range(len(samples[row].scenes)))
            for find, scene in zip(images, samples[row].scenes, strict=True):
                cells = _named_cells(scene, word)
                if not cells:
                    found_nothing += 1
                    assert torch.equal(find.keys, k.reshape(1))
                    continue
                # which of the prompt's image tokens, counted from the first of image `head`
                image_positions = (ids == image_id).nonzero().squeeze(1).tolist()
                offsets = [image_positions.index(int(k)) - find.head * per_image for k in find.keys]
                assert all(0 <= o < per_image for o in offsets)
                assert {token_cells[int(o)] for o in offsets} == {r * GRID + c for r, c in cells}
                assert len(find.keys) == sum(token_cells.count(r * GRID + c) for r, c in cells)
    assert found_nothing


def test_a_pair_drill_finds_each_name_in_both_images():
    samples = make_samples("pair-drill", "train", 2, seed=0)
    targets = _targets("world-qwen-tiny", samples)[-1]
    finds = [t for t in targets if t.layer == FIND_LAYER]
    assert finds and {t.head for t in finds} == {0, 1}
    assert sum(t.head == 0 for t in finds) == sum(t.head == 1 for t in finds)


@pytest.mark.parametrize(
    ("name", "task"), [("world-llava-tiny", "caption"), ("world-qwen-tiny", "video"), ("world-qwen-tiny", "text")]
)
def test_captions_videos_and_text_get_no_target(name, task):
    samples = make_samples(task, "eval", 2, seed=1)
    assert _targets(name, samples)[-1] == []


def _layers(batch: int, heads: int, positions: int) -> tuple[QueriesAndKeys, ...]:
    """Layers whose every query attends uniformly: queries of zeros, keys that say which position they are."""
    keys = torch.eye(positions).expand(batch, heads // 2, positions, positions)  # two heads share a key head
    one_sample = torch.zeros(batch, positions, dtype=torch.long)
    queries = torch.zeros(batch, heads, positions, positions)
    return tuple(QueriesAndKeys(queries.clone(), keys, one_sample.clone(), 1.0) for _ in range(4))


def test_loss_is_low_when_each_head_looks_at_its_keys():
    layers = _layers(2, 4, 6)
    targets = [
        Lookup(0, 1, 1, torch.tensor([3]), torch.tensor([1])),
        Lookup(1, 0, 0, torch.tensor([4, 5]), torch.tensor([1, 2])),
    ]
    spread = lookup_loss(layers, targets)
    # each query sees the keys up to itself: 4 keys for query 3, then 5 and 6
    assert spread.item() == pytest.approx((math.log(4) + math.log(5 / 2) + math.log(6 / 2)) / 3)
    layers[0].query[1, 1, 3, 1] = 50.0  # position 3 of head 1 now looks at key 1 only
    layers[1].query[0, 0, 4:, 1:3] = 50.0  # positions 4 and 5 of head 0 at keys 1 and 2
    assert lookup_loss(layers, targets).item() < 1e-5 < spread.item()
    assert lookup_loss(layers, []).item() == 0


def test_a_query_sees_its_own_sample_up_to_itself():
    layers = _layers(1, 4, 7)
    uniform = lookup_loss(layers, [Lookup(0, 0, 0, torch.tensor([3]), torch.tensor([1]))]).item()
    assert uniform == pytest.approx(math.log(4))  # keys 0-3 of 7
    for layer in layers:
        layer.sequences[0, 2:] = 1  # packed: positions 0-1 are one sample, 2-6 the next
    assert lookup_loss(layers, [Lookup(0, 0, 0, torch.tensor([3]), torch.tensor([2]))]).item() == pytest.approx(
        math.log(2)
    )
    assert lookup_loss(layers, [Lookup(0, 0, 0, torch.tensor([1]), torch.tensor([0]))]).item() == pytest.approx(
        math.log(2)
    )


def test_a_target_moves_with_its_sample_into_the_packed_row():
    target = in_row(Lookup(1, 0, 3, torch.tensor([5, 6]), torch.tensor([2])), 40)
    assert (target.row, target.queries.tolist(), target.keys.tolist()) == (0, [45, 46], [42])


@pytest.mark.parametrize("name", list(IMAGE_TOKEN))
def test_the_loss_reads_the_attention_weights_eager_attention_returns(name):
    # pair-drill puts targets on head 1, which shares its key head with head 0 in Qwen2.5-VL
    samples = make_samples("drill", "train", 2, seed=0) + make_samples("pair-drill", "train", 2, seed=0)
    inputs, _, _, targets = _targets(name, samples)
    assert {t.head for t in targets} >= {0, 1}
    model = AutoModelForImageTextToText.from_pretrained(shipped_path(name), attn_implementation="eager")
    inputs = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        weights = model(**inputs, output_attentions=True).attentions
        use_packed_attention(model)
        loss = lookup_loss(model(**inputs, output_attentions=True).attentions, targets)
    masses = [weights[t.layer][t.row, t.head][t.queries][:, t.keys].sum(-1) for t in targets]
    assert loss.item() == pytest.approx(-torch.log(torch.cat(masses)).mean().item(), rel=1e-5)


def test_loss_explains_what_it_cannot_read():
    layers = _layers(1, 2, 6)
    with pytest.raises(ValueError, match="no head 3 in layer 0"):
        lookup_loss(layers, [Lookup(0, 3, 0, torch.tensor([3]), torch.tensor([1]))])
    with pytest.raises(ValueError, match="use_packed_attention"):
        lookup_loss((None,) * 4, [])
