"""Real-size target architectures, built with random weights, for timing (`specflash bench --profile`).

The shapes are those of llava-hf/llava-1.5-7b-hf and Qwen/Qwen2.5-VL-7B-Instruct; `layers` cuts the
text decoder's depth so the same code runs on a small machine.
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from specflash.targets import Target

SHAPES = ("llava-1.5-7b", "qwen2.5-vl-7b")
LLAVA_IMAGE_TOKEN = 32000
QWEN_IMAGE_TOKEN, QWEN_VIDEO_TOKEN = 151655, 151656


def build(shape: str, layers: int | None, dtype: torch.dtype, device: str) -> Target:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    with torch.device(device):
        model = _llava(layers) if shape == "llava-1.5-7b" else _qwen(layers)
    return Target(model.to(dtype).eval())


def _llava(layers: int | None) -> LlavaForConditionalGeneration:
    text = LlamaConfig(
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=layers or 32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    )
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=LLAVA_IMAGE_TOKEN,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        attn_implementation="sdpa",
    )
    return LlavaForConditionalGeneration(config)


def _qwen(layers: int | None) -> Qwen2_5_VLForConditionalGeneration:
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=layers or 28,
            num_attention_heads=28,
            num_key_value_heads=4,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        ),
        vision_config=dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=3584,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
            tokens_per_second=2,
        ),
        image_token_id=QWEN_IMAGE_TOKEN,
        video_token_id=QWEN_VIDEO_TOKEN,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        attn_implementation="sdpa",
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def prompt(target: Target, kind: str, text: int = 40) -> dict[str, torch.Tensor]:
    """A prompt with one image (576 visual tokens, as LLaVA-1.5 at 336 px) or an 8-frame video."""
    device = target.device
    ids = [1] + [100] * text
    inputs: dict[str, torch.Tensor] = {}
    if target.family_name == "llava":
        if kind == "video":
            raise ValueError("LLaVA-1.5 takes no video; profile it with kind 'image'")
        ids += [LLAVA_IMAGE_TOKEN] * 576 + [100] * 8
        inputs["pixel_values"] = torch.randn(1, 3, 336, 336, device=device, dtype=target.dtype)
    else:
        grid = [1, 48, 48] if kind == "image" else [4, 24, 24]  # 576 image tokens; 8 frames -> 4 x 144
        tokens = grid[0] * grid[1] * grid[2] // 4
        token_id = QWEN_IMAGE_TOKEN if kind == "image" else QWEN_VIDEO_TOKEN
        ids += [151652] + [token_id] * tokens + [151653] + [100] * 8
        patches = torch.randn(grid[0] * grid[1] * grid[2], 3 * 2 * 14 * 14, device=device, dtype=target.dtype)
        key = "pixel_values" if kind == "image" else "pixel_values_videos"
        inputs[key] = patches
        inputs["image_grid_thw" if kind == "image" else "video_grid_thw"] = torch.tensor([grid], device=device)
    inputs["input_ids"] = torch.tensor([ids], device=device)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    return inputs
