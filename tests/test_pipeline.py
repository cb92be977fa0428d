"""specflash.load and Pipeline on the world LLaVA target: exact output, streaming, media, drafts."""

from __future__ import annotations

import warnings

import numpy
import pytest
from test_pipeline_helpers import HAS_SHIPPED, scene_image, target_arg

import specflash
from specflash.pipeline import UNTRAINED, UntrainedDraftWarning, resolve_draft, shipped_drafts

MAX_NEW = 24
IMAGE = scene_image(0)


@pytest.fixture(scope="module")
def pipe() -> specflash.Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedDraftWarning)
        return specflash.load(target=target_arg())


def test_load_names_its_draft_and_warns_when_it_is_untrained():
    if "world-llava-tiny-flash" in shipped_drafts():
        pipe = specflash.load(target=target_arg())
        assert pipe.draft_trained and pipe.draft_name == "world-llava-tiny-flash"
        return
    with pytest.warns(UntrainedDraftWarning, match="untrained"):
        pipe = specflash.load(target=target_arg())
    assert not pipe.draft_trained and pipe.draft_name == UNTRAINED
    assert pipe.target_name == ("world-llava-tiny" if HAS_SHIPPED else target_arg())


def test_chat_is_exactly_plain_decoding_and_streams_the_same_text(pipe):
    image = scene_image(0)
    deltas: list[str] = []
    fast = pipe.chat("Describe the image in detail.", images=[image], max_new_tokens=MAX_NEW, stream=deltas.append)
    plain = pipe.chat("Describe the image in detail.", images=[image], max_new_tokens=MAX_NEW, speculative=False)
    assert fast.token_ids == plain.token_ids and fast.text == plain.text
    assert "".join(deltas) == fast.text
    assert 0 < len(fast.token_ids) <= MAX_NEW and fast.stats.new_tokens == len(fast.token_ids)
    assert fast.prompt_tokens > 64  # the image alone takes 64 tokens
    assert fast.finish_reason == ("stop" if fast.token_ids[-1] in pipe.target.stop_token_ids else "length")
    assert plain.stats.draft_forwards == 0 < fast.stats.draft_forwards


def test_multi_turn_messages_with_two_images(pipe):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The first has more objects."}]},
        {"role": "user", "content": "How many objects are in the second?"},
    ]
    images = [scene_image(1), scene_image(2)]
    fast = pipe.chat_messages(messages, images, max_new_tokens=MAX_NEW)
    plain = pipe.chat_messages(messages, images, max_new_tokens=MAX_NEW, speculative=False)
    assert fast.token_ids == plain.token_ids
    one_image = pipe.chat("How many objects?", images=[images[0]], max_new_tokens=1)
    assert fast.prompt_tokens > one_image.prompt_tokens + 64


def test_sampling_is_seeded(pipe):
    image = scene_image(3)
    runs = [pipe.chat("Describe it.", images=[image], max_new_tokens=8, temperature=1.0, seed=7) for _ in range(2)]
    assert runs[0].token_ids == runs[1].token_ids


def test_a_video_goes_to_llava_as_a_run_of_images(pipe):
    frames = [scene_image(4), scene_image(5), scene_image(6)]
    as_video = pipe.chat("Narrate.", video=frames, max_new_tokens=4)
    as_images = pipe.chat("Narrate.", images=frames, max_new_tokens=4)
    assert as_video.token_ids == as_images.token_ids and as_video.prompt_tokens == as_images.prompt_tokens


@pytest.mark.parametrize(
    ("messages", "images", "match"),
    [
        ([{"role": "user", "content": "hi"}], 1, "only 0 image entries"),
        ([{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}], 1, "more image entries"),
        ([{"role": "user", "content": [{"type": "video"}]}], 0, "video entry but no video"),
        ([{"content": "no role"}], 0, "'role' and 'content'"),
        ([], 0, "at least one message"),
    ],
)
def test_media_that_does_not_match_the_messages_is_refused(pipe, messages, images, match):
    with pytest.raises(ValueError, match=match):
        pipe.chat_messages(messages, [scene_image(i) for i in range(images)], max_new_tokens=2)


def test_a_prompt_too_long_for_the_context_is_refused(pipe):
    with pytest.raises(ValueError, match="exceeds the model's context"):
        pipe.chat("Describe.", images=[scene_image(0)] * 20, max_new_tokens=8)


def test_drafts_resolve_from_directories_and_unknown_names_list_the_known_ones(pipe, tmp_path):
    with pytest.raises(ValueError, match="known: "):
        resolve_draft("no-such-draft")
    pipe.draft.save_pretrained(tmp_path / "mine")
    assert resolve_draft(tmp_path / "mine") == tmp_path / "mine"
    loaded = specflash.load(target=target_arg() or "world-llava-tiny", draft=str(tmp_path / "mine"))
    assert loaded.draft_trained and loaded.draft_name == str(tmp_path / "mine")
    image = scene_image(8)
    assert (
        loaded.chat("Describe.", images=[image], max_new_tokens=8).token_ids
        == pipe.chat("Describe.", images=[image], max_new_tokens=8).token_ids
    )


def test_an_unshipped_world_target_says_how_to_get_it():
    if HAS_SHIPPED:
        pytest.skip("world-llava-tiny is shipped in this checkout")
    with pytest.raises(ValueError, match="specflash world train"):
        specflash.load()


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (None, "messages must be a list"),
        ("Describe.", "messages must be a list"),
        ([{"role": "robot", "content": "hi"}], "role 'robot' is not one of system, user, assistant, developer"),
        ([{"role": "user", "content": None}], "content must be a string or a list of parts"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}], "is not one of"),
        ([{"role": "user", "content": ["hi"]}], "is not one of"),
        ([{"role": "user", "content": [{"type": "text"}]}], "needs 'text' as a string"),
    ],
)
def test_malformed_messages_are_refused(pipe, messages, match):
    with pytest.raises(ValueError, match=match):
        pipe.chat_messages(messages, max_new_tokens=2)


@pytest.mark.parametrize("token", ["<image>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>"])
def test_placeholder_tokens_in_text_are_refused(pipe, token):
    with pytest.raises(ValueError, match="media placeholder token.*image/video parts"):
        pipe.chat(f"What is in {token}?", max_new_tokens=2)
    system = [{"role": "system", "content": f"Images look like {token}."}, {"role": "user", "content": "Hi."}]
    with pytest.raises(ValueError, match="media placeholder token"):
        pipe.chat_messages(system, max_new_tokens=2)


def test_placeholder_tokens_are_refused_by_the_qwen_target_too():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedDraftWarning)
        qwen = specflash.load("world-qwen-tiny")
    with pytest.raises(ValueError, match="'<\\|video_pad\\|>', a media placeholder token"):
        qwen.chat("Frames: <|video_pad|>", max_new_tokens=2)


@pytest.mark.parametrize(
    ("prompt", "options", "match"),
    [
        (None, {}, "prompt must be a string, got NoneType"),
        ("Hi.", {"images": IMAGE}, "images must be a list of PIL images; got one image"),
        ("Hi.", {"images": ["a.png"]}, "images\\[0\\] is a str, not a PIL image"),
        ("Hi.", {"video": IMAGE}, "video must be a list of PIL images; got one image"),
        ("Hi.", {"video": []}, "a video needs at least one frame"),
        ("Hi.", {"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 1, got 2.5"),
        ("Hi.", {"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1, got 0"),
        ("Hi.", {"seed": None}, "seed must be an integer .*, got None"),
        ("Hi.", {"seed": 10**23}, "seed must be an integer from -2\\*\\*63 to 2\\*\\*64 - 1"),
        ("Hi.", {"video": [IMAGE], "video_fps": 0}, "video_fps must be a positive number, got 0"),
        ("Hi.", {"stream": "yes"}, "stream must be a callable"),
    ],
)
def test_bad_chat_arguments_are_refused(pipe, prompt, options, match):
    with pytest.raises(ValueError, match=match):
        pipe.chat(prompt, **options)


def test_numpy_integers_a_developer_turn_and_a_tuple_of_messages_are_taken(pipe):
    messages = ({"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi."})
    result = pipe.chat_messages(messages, max_new_tokens=numpy.int64(3), seed=numpy.int32(4))
    same = pipe.chat_messages([{"role": "system", "content": "Be brief."}, messages[1]], max_new_tokens=3, seed=4)
    assert result.token_ids == same.token_ids and len(result.token_ids) <= 3


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("/no/such/dir", "no such directory"),
        ("./no-such-dir", "no such directory"),
        ("~/no-such-specflash-dir", "no such directory"),
        ("a/b/c", "no such directory"),
        ("world-llava-tinyy", "world-llava-tiny, world-qwen-tiny, world-text-tiny.*hub id .*network"),
    ],
)
def test_targets_that_cannot_exist_fail_at_once_without_asking_the_hub(monkeypatch, target, match):
    def hub(*_args, **_kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(specflash.Target, "from_pretrained", hub)
    with pytest.raises(ValueError, match=match):
        specflash.load(target)


def test_a_directory_without_a_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a model directory: config.json is missing"):
        specflash.load(str(tmp_path))
