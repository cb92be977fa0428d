"""The world generator: deterministic per seed, and every text parses back to the facts it states."""

import random

import pytest

from specflash.world import render
from specflash.world.parse import kinds_named, parse_answer, parse_events
from specflash.world.render import SHAPES, render_scene
from specflash.world.scenes import COLORS, KINDS, SCENE_TYPES
from specflash.world.tasks import TASKS, make_samples
from specflash.world.video import FRAMES, sample_video


def test_world_has_the_promised_variety():
    assert len(SCENE_TYPES) >= 6 and len(KINDS) >= 20 and len(COLORS) >= 8
    assert set(SHAPES) == set(KINDS)


@pytest.mark.parametrize("task", TASKS)
def test_samples_are_deterministic_per_seed(task):
    a, b = make_samples(task, "eval", 3, seed=7), make_samples(task, "eval", 3, seed=7)
    assert [s.messages for s in a] == [s.messages for s in b]
    assert [im.tobytes() for s in a for im in s.images] == [im.tobytes() for s in b for im in s.images]
    other = make_samples(task, "eval", 3, seed=8)
    assert [s.messages for s in a] != [s.messages for s in other]


def test_splits_differ():
    train = make_samples("caption", "train", 5, seed=0)
    held_out = make_samples("caption", "eval", 5, seed=0)
    assert [s.messages for s in train] != [s.messages for s in held_out]


def test_captions_name_exactly_the_scene_objects():
    for s in make_samples("caption", "eval", 40, seed=1):
        text = s.messages[1]["content"][0]["text"]
        assert set(kinds_named(text)) == s.scenes[0].kinds()


@pytest.mark.parametrize("task", ["instruct", "text"])
def test_answers_parse_back_to_their_facts(task):
    checked = 0
    for s in make_samples(task, "eval", 60, seed=2):
        answers = [m["content"][0]["text"] for m in s.messages if m["role"] == "assistant"]
        for turn, answer in zip(s.turns, answers, strict=True):
            if turn.value is None:
                continue
            assert parse_answer(turn.qtype, answer) == turn.value, (turn, answer)
            checked += 1
    assert checked > 60


def test_video_narration_parses_to_its_events():
    for s in make_samples("video", "eval", 40, seed=3):
        assert len(s.video) == FRAMES
        text = s.messages[1]["content"][0]["text"]
        assert parse_events(text) == [e.key() for e in s.events]
        assert s.video[0].tobytes() != s.video[-1].tobytes()


def test_frames_sharing_a_backdrop_render_alike_in_any_order():
    """A video's frames share one drawn backdrop (render._backdrop); drawing a frame must leave it as it
    was, so each frame's pixels do not depend on which frames were drawn before it."""
    scenes = sample_video(random.Random("backdrop")).scenes
    render._backdrop.cache_clear()
    forward = [render_scene(s).tobytes() for s in scenes]
    render._backdrop.cache_clear()
    backward = [render_scene(s).tobytes() for s in reversed(scenes)]
    assert forward == backward[::-1]
    assert len(set(forward)) > 1


def test_each_video_event_lies_inside_a_frame_pair():
    """A video tower's temporal patch (two frames) sees each event whole: before, then after."""
    for i in range(40):
        video = sample_video(random.Random(f"pairs/{i}"))
        changed = {f for f in range(1, FRAMES) if video.scenes[f] != video.scenes[f - 1]}
        assert changed == {e.frame for e in video.events} and all(f % 2 == 1 for f in changed)
        assert 1 not in changed  # the first pair shows the opening scene still


def test_message_format_is_hf_multimodal_chat():
    s = make_samples("instruct", "eval", 1, seed=0)[0]
    first = s.messages[0]
    assert first["role"] == "user"
    assert [c["type"] for c in first["content"]].count("image") == len(s.images)
    assert s.messages[1]["role"] == "assistant"


@pytest.mark.parametrize(("drill", "scenes"), [("drill", 1), ("pair-drill", 2), ("text-drill", 1)])
def test_drills_are_training_only_and_parse_back(drill, scenes):
    for s in make_samples(drill, "train", 20, seed=4):
        assert 5 <= len(s.turns) <= 7 and len(s.scenes) == scenes and s.task == drill
        assert len({turn.question for turn in s.turns}) == len(s.turns)
        for turn in s.turns:
            if turn.value is not None:
                assert parse_answer(turn.qtype, turn.answer) == turn.value, (turn.question, turn.answer)
    with pytest.raises(ValueError, match="training-only"):
        make_samples(drill, "eval", 1, seed=0)


def test_a_pair_drill_answers_both_and_neither():
    answers = {turn.value for s in make_samples("pair-drill", "train", 40, seed=1) for turn in s.turns}
    assert {"both", "neither", "first", "second", True, False} <= answers
