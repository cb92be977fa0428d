"""Each shipped world target loads offline through the HF auto classes and answers plausibly."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from specflash.world.evaluate import generate
from specflash.world.models import SHIPPED, shipped_path
from specflash.world.parse import kinds_named, parse_answer
from specflash.world.processing import load_processor
from specflash.world.tasks import make_samples

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def _shipped(name):
    path = shipped_path(name)
    if not (path / "model.safetensors").exists():
        pytest.skip(f"{name} is not shipped in this checkout")
    return path


def test_shipped_path_rejects_unknown_names():
    with pytest.raises(ValueError, match="world-llava-tiny"):
        shipped_path("world-nope")


@pytest.mark.parametrize("name", ["world-llava-tiny", "world-qwen-tiny"])
def test_image_target_loads_with_auto_classes_and_describes_the_image(name):
    path = _shipped(name)
    torch.set_num_threads(1)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    assert next(model.parameters()).dtype == torch.float32
    if name == "world-llava-tiny" or HAS_TORCHVISION:
        AutoProcessor.from_pretrained(path)  # Qwen2.5-VL's stock processor needs torchvision
    processor = load_processor(path)
    samples = make_samples("caption", "eval", 4, seed=123)
    texts = generate(model, processor, [(s.messages[:1], s.images, None) for s in samples], 160, batch=4)
    # plausible: well-formed captions that get the place right and name objects that are there
    assert sum(s.scenes[0].scene_type in t for s, t in zip(samples, texts, strict=True)) >= 3, texts
    assert any(set(kinds_named(t)) & s.scenes[0].kinds() for s, t in zip(samples, texts, strict=True)), texts


def test_text_target_loads_with_auto_classes_and_answers():
    path = _shipped("world-text-tiny")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    samples = [s for s in make_samples("text", "eval", 8, seed=5) if s.turns[0].value is not None][:4]
    answers = generate(model, tokenizer, [(s.messages[:1], [], None) for s in samples], 40, batch=4)
    parsed = [parse_answer(s.turns[0].qtype, a) for s, a in zip(samples, answers, strict=True)]
    assert sum(p is not None for p in parsed) >= 3, answers  # answers in the expected form


def test_all_shipped_weights_fit_the_budget():
    total = sum(
        (shipped_path(n) / "model.safetensors").stat().st_size
        for n in SHIPPED
        if (shipped_path(n) / "model.safetensors").exists()
    )
    assert total < 30 * 2**20


def test_qwen_inputs_honour_the_video_frame_rate() -> None:
    """Temporal positions follow the frame rate the caller states, as with the stock processor."""
    from PIL import Image

    from specflash.prompting import processor_inputs
    from specflash.world.models import shipped_path
    from specflash.world.processing import load_processor

    processor = load_processor(shipped_path("world-qwen-tiny"))
    frames = [Image.new("RGB", (96, 96), (40 * i, 90, 160)) for i in range(8)]
    text = ["<|vision_start|><|video_pad|><|vision_end|>what happens?"]
    for fps in (1.0, 2.0, 4.0):
        inputs = processor_inputs(processor, text, videos=[frames], video_fps=fps)
        assert inputs["second_per_grid_ts"].tolist() == [2 / fps]


def test_qwen_inputs_fill_an_odd_video_with_its_last_frame() -> None:
    """As the stock video processor: the last frame repeats to fill the last frame pair, so no frame is
    dropped and a one-frame video is one pair."""
    from PIL import Image

    from specflash.world.models import shipped_path
    from specflash.world.processing import video_pixels

    image_processor = load_processor(shipped_path("world-qwen-tiny")).image_processor
    frames = [Image.new("RGB", (96, 96), (40 * i, 90, 160)) for i in range(5)]
    odd, grid = video_pixels(image_processor, frames)
    filled, filled_grid = video_pixels(image_processor, [*frames, frames[-1]])
    assert grid == filled_grid == [3, 12, 12] and torch.equal(odd, filled)
    one, one_grid = video_pixels(image_processor, frames[:1])
    assert one_grid == [1, 12, 12] and torch.equal(one, video_pixels(image_processor, frames[:1] * 2)[0])
    with pytest.raises(ValueError, match="at least one frame"):
        video_pixels(image_processor, [])


def test_eval_reports_question_accuracy_overall_and_by_type():
    from specflash.world.evaluate import evaluate

    _shipped("world-text-tiny")
    torch.set_num_threads(1)
    result = evaluate("world-text-tiny", n=4, seed=1)
    by_type = result["question_accuracy_by_type"]
    assert by_type and all(0.0 <= v <= 1.0 for v in by_type.values())
    assert 0.0 <= result["question_accuracy"] <= 1.0 and result["questions"] >= len(by_type)


def test_eval_of_a_directory_without_weights_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from specflash.cli import app

    (tmp_path / "config.json").write_text('{"model_type": "qwen2_5_vl"}')  # a run still training
    result = CliRunner().invoke(app, ["world", "eval", "--target", str(tmp_path)])
    assert result.exit_code == 2 and "holds no trained world model" in " ".join(result.output.replace("│", " ").split())
