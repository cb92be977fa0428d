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
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
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
# What Qwen2.5-VL and Qwen2-VL configs share: the text model with M-RoPE, the placeholder ids, the kernel.
QWEN_SHARED = dict(
    text_config={
        **TEXT,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
    },
    image_token_id=QWEN_IMAGE,
    video_token_id=QWEN_VIDEO,
    vision_start_token_id=QWEN_START,
    vision_end_token_id=QWEN_END,
    attn_implementation="sdpa",
)


def _finish(model: torch.nn.Module, media_ids: bool = True) -> Target:
    if media_ids:
        # A random model must not emit the media placeholder ids: a re-read sequence would take them for
        # media. With zero logits there, greedy decoding never picks them over 36 random-signed others.
        with torch.no_grad():
            model.get_output_embeddings().weight[VOCAB - 4 :] = 0
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
        **QWEN_SHARED,
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
    )
    return _finish(Qwen2_5_VLForConditionalGeneration(config))


def qwen2_vl(seed: int = 0) -> Target:
    """Qwen2-VL: the same adapter as Qwen2.5-VL (no per-grid time stamps)."""
    torch.manual_seed(seed)
    config = Qwen2VLConfig(
        **QWEN_SHARED,
        vision_config=dict(
            depth=1,
            embed_dim=32,
            hidden_size=64,
            mlp_ratio=2,
            num_heads=4,
            patch_size=4,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
    )
    return _finish(Qwen2VLForConditionalGeneration(config))


def llama(seed: int = 0, vocab: int = VOCAB) -> Target:
    torch.manual_seed(seed)
    config = LlamaConfig(**{**TEXT, "vocab_size": vocab}, attn_implementation="sdpa")
    return _finish(LlamaForCausalLM(config), media_ids=False)


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
    batch["mm_token_type_ids"] = (ids == QWEN_IMAGE).int() + 2 * (ids == QWEN_VIDEO).int()
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


def row_media(inputs: dict[str, torch.Tensor], row: int) -> dict[str, torch.Tensor]:
    """The media of one row of a LLaVA batch (images are laid out row after row)."""
    if "pixel_values" not in inputs or "image_grid_thw" in inputs:
        return {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    per_row = (inputs["input_ids"] == LLAVA_IMAGE).sum(-1) // LLAVA_IMAGE_TOKENS
    first = int(per_row[:row].sum())
    return {"pixel_values": inputs["pixel_values"][first : first + int(per_row[row])]}


def row_inputs(inputs: dict[str, torch.Tensor], row: int, extra: list[int] | None = None) -> dict[str, torch.Tensor]:
    """One row of a batch, unpadded, with its own media, extended by `extra` text tokens."""
    return {**row_media(inputs, row), **_row(inputs, row, extra or [])}


def _row(inputs: dict[str, torch.Tensor], row: int, extra: list[int]) -> dict[str, torch.Tensor]:
    """One row of a batch without its padding, extended by `extra` text tokens."""
    keep = inputs["attention_mask"][row].bool()
    ids = torch.cat([inputs["input_ids"][row][keep], torch.tensor(extra, dtype=torch.long)])[None]
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "mm_token_type_ids" in inputs:
        types = inputs["mm_token_type_ids"][row][keep]
        out["mm_token_type_ids"] = torch.cat([types, torch.zeros(len(extra), dtype=types.dtype)])[None]
    return out


def fit_draft(target: Target, inputs: dict[str, torch.Tensor], max_new_tokens: int, steps: int = 120, config=None):
    """A draft overfit on the target's own greedy continuation of a batch-1 prompt, so most of its
    proposals are accepted: long acceptance paths run. Every slot i learns f[t+1+i]."""
    from specflash import Draft, DraftConfig
    from specflash.train.losses import slot_losses

    continuation = hf_greedy(target, inputs, max_new_tokens)[0]
    sequence = target.prepare({**inputs, **_row(inputs, 0, continuation)})
    _, prefill = target.prefill(sequence)
    features, embeds = prefill.features.clone(), prefill.embeds.clone()
    draft = Draft.for_target(target, config or DraftConfig())
    target.model.requires_grad_(False)  # as in the trainer: only the draft learns
    optimizer = torch.optim.Adam(draft.parameters(), lr=3e-3)
    everywhere = torch.ones_like(prefill.attention_mask, dtype=torch.bool)
    for _ in range(steps):
        (predictions,) = draft.forward_sequence(features, embeds, prefill.attention_mask, prefill.spans)
        losses = slot_losses(
            predictions, features, everywhere, prefill.attention_mask, target.logits, [1.0] * draft.config.k, w_ce=0.0
        )
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
    return draft.eval()
