"""Images and videos from files and data URLs; incremental decoding of multi-byte text."""

from __future__ import annotations

import base64

import pytest
from test_pipeline_helpers import png_bytes, scene_image, write_video
from transformers import AutoTokenizer

from specflash.media import MediaError, decode_data_url, load_image, load_video
from specflash.pipeline import IncrementalDecoder


def test_png_and_jpeg_files_load_as_rgb(tmp_path):
    image = scene_image(0)
    image.save(tmp_path / "a.png")
    image.convert("L").save(tmp_path / "b.jpg")
    assert load_image(tmp_path / "a.png").tobytes() == image.convert("RGB").tobytes()
    assert load_image(tmp_path / "b.jpg").mode == "RGB"


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "not found"), (b"not an image", "not a decodable"), (b"\x89PNG\r\n\x1a\nbroken", "not a decodable")],
)
def test_bad_image_files_raise_media_errors(tmp_path, content, match):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=match):
        load_image(path)


def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path):
    scene_image(0).save(tmp_path / "a.png")
    with pytest.raises(MediaError, match="exceeds the limit"):
        load_image(tmp_path / "a.png", max_pixels=100)


def test_other_formats_are_refused(tmp_path):
    scene_image(0).save(tmp_path / "a.gif")
    with pytest.raises(MediaError, match="GIF is not supported"):
        load_image(tmp_path / "a.gif")


def test_data_urls():
    image = scene_image(1)
    url = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()
    assert decode_data_url(url).tobytes() == image.convert("RGB").tobytes()
    assert decode_data_url(url.replace("image/png", "IMAGE/PNG")).size == image.size  # media types ignore case
    for bad in ("http://example.com/a.png", "data:image/png;base64,!!!", "data:image/png;base64,aGVsbG8="):
        with pytest.raises(MediaError):
            decode_data_url(bad)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("data:text/plain;base64,aGVsbG8=", "the data URL holds text/plain, not an image"),
        ("data:;base64,aGVsbG8=", "holds text/plain"),
        ("data:image/png;base64,aGVsbG8=", "image data URL \\(image/png\\): not a decodable PNG or JPEG image"),
    ],
)
def test_data_url_errors_name_the_media_type_not_python_objects(url, match):
    with pytest.raises(MediaError, match=match) as error:
        decode_data_url(url)
    assert "BytesIO" not in str(error.value)


def test_video_frames_are_sampled_at_the_asked_rate(tmp_path):
    path = write_video(tmp_path / "v.mp4")  # 3 s at 10 fps, frame i has gray level 8 i
    frames = load_video(path, fps=2, max_frames=8)
    assert len(frames) == 6
    levels = [frame.getpixel((0, 0))[0] for frame in frames]
    assert all(abs(level - 40 * i) <= 4 for i, level in enumerate(levels)), levels
    assert len(load_video(path, fps=2, max_frames=4)) == 4


def test_bad_videos_raise_media_errors(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    with pytest.raises(MediaError, match="not a decodable video"):
        load_video(tmp_path / "bad.mp4")
    with pytest.raises(MediaError, match="not found"):
        load_video(tmp_path / "none.mp4")


def test_incremental_decoding_never_splits_a_character():
    from test_pipeline_helpers import target_dir

    tokenizer = AutoTokenizer.from_pretrained(target_dir())
    text = "a red cube — 猫 🙂 next to it"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    deltas: list[str] = []
    decoder = IncrementalDecoder(tokenizer, deltas.append)
    for token in ids:
        decoder.add([token])
    assert decoder.finish() == "".join(deltas) == tokenizer.decode(ids)
    assert not any("\ufffd" in delta for delta in deltas)
