"""The video target's change loss: per video token, the change in its cell since the last frame pair."""

import torch

from specflash.world.scenes import Scene, WorldObject
from specflash.world.tasks import Sample, make_samples
from specflash.world.video import Event
from specflash.world.video_changes import (
    CHANGE_WORDS,
    VIDEO_TOKEN_GRID,
    cell_changes,
    change_labels,
    change_loss,
    video_token_labels,
)

KITE = WorldObject(kind="kite", color="red", size="large", cell=(0, 0))
BALL = WorldObject(kind="ball", color="blue", size="small", cell=(2, 2))


def _sample(events: list[Event]) -> Sample:
    return Sample("video", [], [], [], [Scene("park", [KITE, BALL])], [], events=events)


def test_changes_follow_each_object_through_the_events():
    events = [
        Event("move", "kite", "red", 3, "right", (0, 1)),
        Event("appear", "bench", "pink", 5, None, (1, 1)),
        Event("disappear", "kite", "red", 7),  # vanishes from where it moved to
    ]
    assert cell_changes(_sample(events)) == {
        1: {(0, 0): None, (0, 1): "right"},
        2: {(1, 1): "appear"},
        3: {(0, 1): "disappear"},
    }


def test_token_labels_flag_the_cells_of_changes_only_after_the_first_pair():
    words = {change: i for i, change in enumerate(CHANGE_WORDS)}
    labels = video_token_labels(_sample([Event("disappear", "ball", "blue", 5)]), words)
    per_pair = labels.reshape(4, VIDEO_TOKEN_GRID, VIDEO_TOKEN_GRID)
    assert (per_pair[0] == -100).all()
    assert per_pair[2, -1, -1] == words["disappear"] and per_pair[2, 0, 0] == words["nothing"]
    assert (per_pair[1] == words["nothing"]).all() and (per_pair[3] == words["nothing"]).all()
    assert (per_pair[2] == words["disappear"]).sum() == (VIDEO_TOKEN_GRID // 3) ** 2


def test_real_videos_label_every_event():
    for sample in make_samples("video", "train", 30, seed=0):
        changes = cell_changes(sample)
        flagged = [c for pair in changes.values() for c in pair.values() if c is not None]
        assert len(flagged) == len(sample.events)


def test_change_loss_is_zero_without_video():
    class Stub(torch.nn.Module):
        pass

    hidden = (torch.randn(2, 5, 8),) * 3
    assert change_loss(Stub(), hidden, torch.full((2, 5), -100)).item() == 0


def test_labels_line_up_with_the_processors_video_tokens():
    from specflash.world.models import shipped_path
    from specflash.world.processing import encode, load_processor, tokenizer_of

    processor = load_processor(shipped_path("world-qwen-tiny"))
    tokenizer = tokenizer_of(processor)
    samples = [*make_samples("video", "train", 2, seed=0), make_samples("caption", "train", 1, seed=0)[0]]
    inputs = encode(processor, [s.messages for s in samples], [s.images for s in samples], [s.video for s in samples])
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    labels = change_labels(inputs["input_ids"], samples, tokenizer, video_id)
    for row, sample in enumerate(samples[:2]):
        video_positions = inputs["input_ids"][row] == video_id
        assert int(video_positions.sum()) == 4 * VIDEO_TOKEN_GRID**2
        assert (labels[row][~video_positions] == -100).all()
        words = {change: tokenizer(w, add_special_tokens=False).input_ids[0] for change, w in CHANGE_WORDS.items()}
        assert torch.equal(labels[row][video_positions], video_token_labels(sample, words))
    assert (labels[2] == -100).all()
