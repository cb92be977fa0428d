"""Targets load from checkpoint directories through the stock HF classes."""

import importlib.util
import shutil

import pytest
import tiny
import torch
import transformers

from specflash import Target, autoregressive_generate
from specflash.pipeline import load_target
from specflash.world.models import shipped_path
from specflash.world.processing import QwenInputs


@pytest.mark.parametrize(("make", "family"), [(tiny.llava, "llava"), (tiny.qwen, "qwen2_5_vl"), (tiny.llama, "text")])
def test_from_pretrained_picks_the_adapter(tmp_path, make, family: str) -> None:
    built = make(seed=1)
    built.model.save_pretrained(tmp_path)
    loaded = Target.from_pretrained(tmp_path, device="cpu")
    assert loaded.family_name == family and loaded.dtype == torch.float32
    inputs = tiny.text_inputs(seed=1)
    before = autoregressive_generate(built, inputs, max_new_tokens=8).new_token_ids
    assert autoregressive_generate(loaded, inputs, max_new_tokens=8).new_token_ids == before


def test_from_pretrained_refuses_unsupported_types(tmp_path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'gpt2' is not supported"):
        Target.from_pretrained(tmp_path)


QWEN_PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
)


def _without_torchvision(monkeypatch) -> None:
    """Where torchvision is installed, fail processor loading as transformers does without it."""
    if importlib.util.find_spec("torchvision") is None:
        return

    def missing(*_args, **_kwargs):
        raise ImportError("Qwen2VLVideoProcessor requires the Torchvision library but it was not found")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", missing)


def test_a_processor_missing_another_package_names_no_torchvision(tmp_path, monkeypatch):
    def missing(*_args, **_kwargs):
        raise ImportError("this processor requires the PyAV library but it was not found")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", missing)
    tiny.qwen(seed=0).model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="needs a package that is not installed; install it. ") as error:
        Target.from_pretrained(tmp_path)
    assert "torchvision" not in str(error.value) and "PyAV" in str(error.value)


def test_qwen_directories_need_torchvision_and_only_world_targets_do_without(tmp_path, monkeypatch):
    _without_torchvision(monkeypatch)
    tiny.qwen(seed=0).model.save_pretrained(tmp_path)
    for name in QWEN_PROCESSOR_FILES:  # a full Qwen2.5-VL processor, whose video processor needs torchvision
        shutil.copy(shipped_path("world-qwen-tiny") / name, tmp_path / name)
    with pytest.raises(ValueError, match="pip install torchvision"):
        Target.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="pip install torchvision"):
        load_target(str(tmp_path))
    assert isinstance(load_target("world-qwen-tiny", "cpu").processor, QwenInputs)
    # a world target trained here (`specflash world train --out DIR`) is a world target too
    shutil.copy(shipped_path("world-qwen-tiny") / "training_state.json", tmp_path)
    assert isinstance(load_target(str(tmp_path), "cpu").processor, QwenInputs)
