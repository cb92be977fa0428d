"""Model recipes: stock HF configs for the world targets, in a tiny (CPU, shipped) and a small (GPU)
size. Every visual input gives 64 tokens per image: LLaVA 96x96 with 12-pixel patches (CLS dropped);
Qwen2.5-VL 128x128 with 8-pixel patches merged 2x2."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    PretrainedConfig,
    Qwen2_5_VLConfig,
)

FAMILIES = {"world-llava-tiny": "llava", "world-qwen-tiny": "qwen", "world-text-tiny": "text"}
LLAVA_IMAGE_SIZE, LLAVA_PATCH = 96, 12
QWEN_IMAGE_SIZE, QWEN_VIDEO_SIZE, QWEN_PATCH, QWEN_MERGE = 128, 96, 8, 2
QWEN_TEMPORAL_PATCH = 2  # video frames per temporal patch: the vision tower sees frame pairs


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int


SIZES = {
    "tiny": Dims(hidden=128, layers=4, heads=4, kv_heads=2, mlp=384, vision_hidden=96, vision_layers=2, vision_heads=4),
    "small": Dims(
        hidden=768, layers=12, heads=12, kv_heads=4, mlp=2048, vision_hidden=384, vision_layers=6, vision_heads=6
    ),
}


def _llama(d: Dims, vocab: int, ids: dict[str, int]) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=d.hidden,
        intermediate_size=d.mlp,
        num_hidden_layers=d.layers,
        num_attention_heads=d.heads,
        num_key_value_heads=d.kv_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=ids["pad"],
        eos_token_id=ids["eos"],
        bos_token_id=None,
    )


def model_config(family: str, size: str, vocab: int, ids: dict[str, int]) -> PretrainedConfig:
    """ids: token ids for pad, eos, image, video, vision_start, vision_end."""
    d = SIZES[size]
    if family == "text":
        return _llama(d, vocab, ids)
    if family == "llava":
        vision = CLIPVisionConfig(
            hidden_size=d.vision_hidden,
            intermediate_size=2 * d.vision_hidden,
            num_hidden_layers=d.vision_layers,
            num_attention_heads=d.vision_heads,
            image_size=LLAVA_IMAGE_SIZE,
            patch_size=LLAVA_PATCH,
            projection_dim=d.vision_hidden,
        )
        config = LlavaConfig(
            vision_config=vision,
            text_config=_llama(d, vocab, ids),
            image_token_index=ids["llava_image"],
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
            projector_hidden_act="gelu",
            image_seq_length=(LLAVA_IMAGE_SIZE // LLAVA_PATCH) ** 2,
            tie_word_embeddings=True,
        )
        config.pad_token_id, config.eos_token_id = ids["pad"], ids["eos"]
        return config
    if family == "qwen":
        head_dim = d.hidden // d.heads
        quarter = head_dim // 8  # M-RoPE splits head_dim/2 rotary pairs over (time, height, width)
        text = {
            "vocab_size": vocab,
            "hidden_size": d.hidden,
            "intermediate_size": d.mlp,
            "num_hidden_layers": d.layers,
            "num_attention_heads": d.heads,
            "num_key_value_heads": d.kv_heads,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": True,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2 * quarter, quarter, quarter],
            },
            "pad_token_id": ids["pad"],
            "eos_token_id": ids["eos"],
            "bos_token_id": None,
        }
        vision = {
            "depth": d.vision_layers,
            "hidden_size": d.vision_hidden,
            "intermediate_size": 2 * d.vision_hidden,
            "num_heads": d.vision_heads,
            "patch_size": QWEN_PATCH,
            "spatial_merge_size": QWEN_MERGE,
            "temporal_patch_size": QWEN_TEMPORAL_PATCH,
            "window_size": QWEN_IMAGE_SIZE,
            "out_hidden_size": d.hidden,
            "fullatt_block_indexes": list(range(d.vision_layers)),
            "tokens_per_second": 2,
        }
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=ids["image"],
            video_token_id=ids["video"],
            vision_start_token_id=ids["vision_start"],
            vision_end_token_id=ids["vision_end"],
            tie_word_embeddings=True,
        )
        config.pad_token_id, config.eos_token_id = ids["pad"], ids["eos"]
        return config
    raise ValueError(f"unknown family {family!r}")
