"""Tiny random-weight targets built from configs (offline), and hand-built inputs for them.

Vocabularies are small so that an untrained draft is right now and then and acceptance paths run.
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from specflash import Target

VOCAB = 40
EOS = 2
TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    bos_token_id=1,
    eos_token_id=EOS,
    pad_token_id=0,
)
LLAVA_IMAGE = VOCAB - 1
LLAVA_IMAGE_TOKENS = 16  # 32x32 pixels, 8x8 patches
QWEN_IMAGE, QWEN_VIDEO, QWEN_START, QWEN_END = VOCAB - 1, VOCAB - 2, VOCAB - 3, VOCAB - 4


def _finish(model: torch.nn.Module) -> Target:
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = 0
    return Target(model.eval())


def llava(seed: int = 0) -> Target:
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=8
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**TEXT),
        image_token_index=LLAVA_IMAGE,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        attn_implementation="sdpa",
    )
    return _finish(LlavaForConditionalGeneration(config))


def qwen(seed: int = 0) -> Target:
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={
            **TEXT,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
        },
        vision_config=dict(
            depth=1,
            hidden_size=32,
            intermediate_size=64,
            num_heads=4,
            out_hidden_size=64,
            patch_size=4,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=16,
            fullatt_block_indexes=[0],
            tokens_per_second=2,
        ),
        image_token_id=QWEN_IMAGE,
        video_token_id=QWEN_VIDEO,
        vision_start_token_id=QWEN_START,
        vision_end_token_id=QWEN_END,
        attn_implementation="sdpa",
    )
    return _finish(Qwen2_5_VLForConditionalGeneration(config))


def llama(seed: int = 0) -> Target:
    torch.manual_seed(seed)
    return _finish(LlamaForCausalLM(LlamaConfig(**TEXT, attn_implementation="sdpa")))


def _text(generator: torch.Generator, n: int) -> list[int]:
    return torch.randint(3, VOCAB - 4, (n,), generator=generator).tolist()


def llava_inputs(images_per_row: list[int], text: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded rows, each: text, then its images (with text between), then text."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for index, images in enumerate(images_per_row):
        row = [1, *_text(generator, text + index)]
        for _ in range(images):
            row += [LLAVA_IMAGE] * LLAVA_IMAGE_TOKENS + _text(generator, 2)
        rows.append(row)
    batch = _left_pad(rows)
    total = sum(images_per_row)
    if total:
        batch["pixel_values"] = torch.randn(total, 3, 32, 32, generator=generator)
    return batch


def qwen_inputs(images: int = 0, video_frames: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    """One row: text, images of 8x8 patches (16 tokens each), a video of 8x8-patch frames."""
    generator = torch.Generator().manual_seed(seed)
    row = [1, *_text(generator, 5)]
    batch: dict[str, torch.Tensor] = {}
    if images:
        for _ in range(images):
            row += [QWEN_START] + [QWEN_IMAGE] * 16 + [QWEN_END] + _text(generator, 2)
        batch["pixel_values"] = torch.randn(images * 64, 3 * 2 * 4 * 4, generator=generator)
        batch["image_grid_thw"] = torch.tensor([[1, 8, 8]] * images)
    if video_frames:
        groups = video_frames // 2
        row += [QWEN_START] + [QWEN_VIDEO] * (16 * groups) + [QWEN_END]
        batch["pixel_values_videos"] = torch.randn(groups * 64, 3 * 2 * 4 * 4, generator=generator)
        batch["video_grid_thw"] = torch.tensor([[groups, 8, 8]])
        batch["second_per_grid_ts"] = torch.tensor([1.0])
    row += _text(generator, 4)
    ids = torch.tensor([row])
    batch["input_ids"] = ids
    batch["attention_mask"] = torch.ones_like(ids)
    batch["mm_token_type_ids"] = ((ids == QWEN_IMAGE).int() + 2 * (ids == QWEN_VIDEO).int())
    return batch


def text_inputs(rows: int = 1, length: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return _left_pad([[1, *_text(generator, length + 2 * r)] for r in range(rows)])


def _left_pad(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return {"input_ids": ids, "attention_mask": mask}


def hf_greedy(target: Target, inputs: dict[str, torch.Tensor], max_new_tokens: int) -> list[list[int]]:
    """Hugging Face's own greedy decoding, cut after the first stop token of each row."""
    out = target.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    rows = []
    for row in out[:, inputs["input_ids"].shape[1] :].tolist():
        if EOS in row:
            row = row[: row.index(EOS) + 1]
        rows.append(row)
    return rows
