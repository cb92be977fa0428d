"""Assemble a world model directory: tokenizer, chat template, stock processor files, config and
fresh weights, so the directory loads like a hub checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessorPil,
    GenerationConfig,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from .recipes import (
    FAMILIES,
    LLAVA_IMAGE_SIZE,
    LLAVA_PATCH,
    QWEN_IMAGE_SIZE,
    QWEN_MERGE,
    QWEN_PATCH,
    QWEN_TEMPORAL_PATCH,
    QWEN_VIDEO_SIZE,
    model_config,
)
from .tokenizer import chat_template, train_tokenizer

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "llava": LlavaForConditionalGeneration,
    "qwen": Qwen2_5_VLForConditionalGeneration,
    "text": LlamaForCausalLM,
}
MIN_PIXELS = 32 * 32


def family_of(name: str) -> str:
    if name not in FAMILIES:
        raise ValueError(f"unknown world model {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def token_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    c = tok.convert_tokens_to_ids
    return {
        "pad": c("<|endoftext|>"),
        "eos": c("<|im_end|>"),
        "llava_image": c("<image>"),
        "image": c("<|image_pad|>"),
        "video": c("<|video_pad|>"),
        "vision_start": c("<|vision_start|>"),
        "vision_end": c("<|vision_end|>"),
    }


def _save_qwen_processor(tok: PreTrainedTokenizerFast, out: Path) -> None:
    # Written as Qwen2_5_VLProcessor.save_pretrained would; built by hand because that class needs
    # torchvision to be constructed (see processing.py).
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=QWEN_PATCH,
        merge_size=QWEN_MERGE,
        temporal_patch_size=QWEN_TEMPORAL_PATCH,
        size={"shortest_edge": MIN_PIXELS, "longest_edge": QWEN_IMAGE_SIZE**2},
    )
    image_processor.save_pretrained(out)
    config = json.loads((out / "preprocessor_config.json").read_text())
    config.update(image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2_5_VLProcessor")
    (out / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
    video = {
        k: config[k]
        for k in (
            "do_convert_rgb",
            "do_normalize",
            "do_rescale",
            "do_resize",
            "image_mean",
            "image_std",
            "merge_size",
            "patch_size",
            "rescale_factor",
            "temporal_patch_size",
        )
    }
    video.update(
        video_processor_type="Qwen2VLVideoProcessor",
        processor_class="Qwen2_5_VLProcessor",
        size={"shortest_edge": MIN_PIXELS, "longest_edge": QWEN_VIDEO_SIZE**2},
        do_sample_frames=False,
        resample=config.get("resample", 3),
    )
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2_5_VLProcessor"}, indent=2))
    (out / "chat_template.jinja").write_text(tok.chat_template)


def save_processor(family: str, tok: PreTrainedTokenizerFast, out: Path) -> None:
    tok.chat_template = chat_template(family)
    tok.save_pretrained(out)
    if family == "llava":
        LlavaProcessor(
            image_processor=CLIPImageProcessorPil(
                size={"shortest_edge": LLAVA_IMAGE_SIZE},
                crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE},
            ),
            tokenizer=tok,
            patch_size=LLAVA_PATCH,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=tok.chat_template,
        ).save_pretrained(out)
    elif family == "qwen":
        _save_qwen_processor(tok, out)


def write_model_files(name: str, out: Path) -> None:
    """Write the tokenizer (trained on world text), processor and generation config of `name` to `out`."""
    family = family_of(name)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    save_processor(family, tok, out)
    ids = token_ids(tok)
    GenerationConfig(
        eos_token_id=ids["eos"], pad_token_id=ids["pad"], do_sample=False, max_new_tokens=256
    ).save_pretrained(out)


def init_model(name: str, size: str, out: Path, seed: int) -> PreTrainedModel:
    """Freshly initialised weights of `name` for the tokenizer that write_model_files put in `out`."""
    family = family_of(name)
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    torch.manual_seed(seed)
    return MODEL_CLASSES[family](model_config(family, size, len(tok), token_ids(tok)))


def new_model(name: str, size: str, out: Path, seed: int) -> PreTrainedModel:
    """Write tokenizer, processor and generation config to `out`; return freshly initialised weights."""
    write_model_files(name, out)
    return init_model(name, size, out, seed)
