"""`specflash generate`: the embedded default end to end, --compare, the tree options (serve's too), and one-line
errors for user mistakes."""

from __future__ import annotations

import re

import pytest
from test_pipeline_helpers import scene_image, target_arg, write_video
from typer.testing import CliRunner

from specflash import commands
from specflash.cli import app
from specflash.tree import TreeConfig

runner = CliRunner()


def _generate(*args: str):
    target = target_arg()  # None: the embedded default, with no --target at all
    return runner.invoke(app, ["generate", *args, *(["--target", target] if target else [])])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    scene_image(0).save(folder / "a.png")
    scene_image(1).save(folder / "b.jpg")
    return folder


def test_compare_prints_both_outputs_identical_with_speeds(images):
    result = _generate(
        "--prompt", "Describe the image.", "--image", str(images / "a.png"), "--compare", "--max-new-tokens", "16"
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "speculative (FLASH)" in out and "plain decoding" in out
    assert "outputs: identical" in out
    assert re.search(r"speed-up: \d+\.\d\dx", out)
    assert "tokens/s" in out and "tau" in out


def _count(output: str, row: str) -> int:
    """The speculative column of one row of the stats table."""
    return int(re.search(rf"{row}\s*│\s*(\d+)", output).group(1))


def test_the_tree_options_reach_the_decoder(images):
    # FLASH proposes 3 tokens a forward: a depth-3 tree takes one draft forward a cycle, the default depth 6 two.
    args = ("-p", "Describe the image.", "-i", str(images / "a.png"), "--compare", "--max-new-tokens", "24")
    shallow = _generate(*args, "--depth", "3", "--total-tokens", "20")
    default = _generate(*args)
    for result in (shallow, default):
        assert result.exit_code == 0, result.output
        assert "outputs: identical" in result.output
    assert _count(shallow.output, "draft forwards") <= _count(shallow.output, "target forwards")
    assert _count(default.output, "draft forwards") > _count(default.output, "target forwards")


@pytest.mark.parametrize("command", [["generate", "-p", "Describe."], ["serve"]])
def test_every_tree_option_reaches_the_pipeline(monkeypatch, command):
    asked = {}

    def fake_load(**options):
        asked.update(options)
        raise ValueError("stopped after loading")

    monkeypatch.setattr(commands, "load", fake_load)
    tree = ["--depth", "3", "--top-k", "4", "--total-tokens", "20"]
    for sizing, adaptive in ((["--fixed-tree"], False), ([], True)):
        result = runner.invoke(app, [*command, *tree, *sizing])
        assert result.exit_code == 2 and "stopped after loading" in result.output
        assert asked["tree"] == TreeConfig(depth=3, top_k=4, total_tokens=20, adaptive=adaptive)


def test_two_images_and_streaming(images):
    result = _generate(
        "-p",
        "Compare the scenes.",
        "-i",
        str(images / "a.png"),
        "-i",
        str(images / "b.jpg"),
        "--stream",
        "--max-new-tokens",
        "8",
    )
    assert result.exit_code == 0, result.output
    assert "new tokens" in result.output


def test_a_video_reaches_llava_as_frames(tmp_path):
    video = write_video(tmp_path / "clip.mp4")
    result = _generate(
        "-p", "Narrate.", "--video", str(video), "--fps", "1", "--max-frames", "2", "--max-new-tokens", "4"
    )
    assert result.exit_code == 0, result.output
    assert "its 2 frames go in as images" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "missing.png"], "image file not found"),
        (["--video", "missing.mp4"], "video file not found"),
        (["-i", "{bad}"], "not a decodable PNG or JPEG"),
        (["--draft", "no-such-draft"], "neither a draft directory nor a shipped draft"),
        (["-i", "{a}"] * 20, "exceeds the model's context"),
        (["--total-tokens", "1000"], "exceeds the 328 nodes that depth 6 and top_k 8 can propose"),
    ],
)
def test_user_mistakes_end_with_a_message_not_a_traceback(images, tmp_path, args, message):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    args = [a.format(bad=tmp_path / "bad.png", a=images / "a.png") for a in args]
    result = _generate("-p", "Describe.", "--max-new-tokens", "8", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
