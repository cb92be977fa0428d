"""Turn samples into model inputs, with each family's stock processor.

`encode(processor, family, conversations, ...)` renders the chat template and calls the processor.
World models are trained and evaluated with transformers' PIL image processors, which need no
torchvision (it has no CPU build on the development machines) and resize alike everywhere. The
Qwen2.5-VL video processor exists only for torchvision, so for that family `QwenInputs` produces the
same tensors from the stock tokenizer and the stock PIL image processor: per-frame patches regrouped
into temporal pairs, exactly the video processor's layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, BaseImageProcessor, BatchFeature

from specflash.prompting import processor_inputs

from .recipes import QWEN_VIDEO_SIZE

VIDEO_FPS = 2.0  # frames per second the world's videos are said to have


def video_frames(frames: Sequence[Image.Image]) -> list[Image.Image]:
    """Frames at the size the Qwen2.5-VL world target sees video in (smaller than its still images)."""
    return [f.resize((QWEN_VIDEO_SIZE, QWEN_VIDEO_SIZE), Image.BICUBIC) for f in frames]


def video_pixels(image_processor: BaseImageProcessor, frames: Sequence[Image.Image]) -> tuple[torch.Tensor, list[int]]:
    """Qwen2.5-VL video patches and grid (t, h, w) of the frames, from the PIL image processor: the
    video processor's layout, consecutive frames paired into temporal patches."""
    if not frames:
        raise ValueError("a video needs at least one frame")
    t = image_processor.temporal_patch_size
    # as the stock video processor: the last frame repeats to fill the last temporal patch
    small = video_frames([*frames, *[frames[-1]] * (-len(frames) % t)])
    out = image_processor(images=small, return_tensors="np")
    _, gh, gw = (int(x) for x in out["image_grid_thw"][0])
    c = 3
    # per frame: (tokens, C, T, ph, pw) with T copies of the frame; keep one copy, pair frames up
    per = out["pixel_values"].reshape(len(small), gh * gw, c, t, -1)[:, :, :, 0]
    grid_t = len(small) // t
    pairs = per.reshape(grid_t, t, gh * gw, c, -1).transpose(0, 2, 3, 1, 4)
    return torch.from_numpy(np.ascontiguousarray(pairs).reshape(grid_t * gh * gw, -1)), [grid_t, gh, gw]


class QwenInputs:
    """Stand-in for Qwen2_5_VLProcessor.__call__ on the PIL backend (see module docstring)."""

    def __init__(self, path: str | Path):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
        self.chat_template = self.tokenizer.chat_template
        self.merge = self.image_processor.merge_size

    def apply_chat_template(self, messages: list[dict], **kwargs) -> str:
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def __call__(
        self,
        text: list[str],
        images=None,
        videos=None,
        padding=True,
        return_tensors="pt",
        fps: float = VIDEO_FPS,
        add_special_tokens: bool = True,
        **_: object,
    ) -> BatchFeature:
        """As the stock processor: `fps` is the frame rate of the given (already sampled) video frames;
        other stock options (do_sample_frames, ...) do not apply to pre-sampled frames."""
        data: dict[str, torch.Tensor] = {}
        image_tokens: list[int] = []
        video_tokens: list[int] = []
        if images:
            out = self.image_processor(images=list(images), return_tensors="pt")
            data["pixel_values"], data["image_grid_thw"] = out["pixel_values"], out["image_grid_thw"]
            image_tokens = [int(g.prod()) // self.merge**2 for g in out["image_grid_thw"]]
        if videos:
            encoded = [video_pixels(self.image_processor, v) for v in videos]
            data["pixel_values_videos"] = torch.cat([e[0] for e in encoded])
            data["video_grid_thw"] = torch.tensor([e[1] for e in encoded])
            data["second_per_grid_ts"] = torch.tensor([self.image_processor.temporal_patch_size / fps] * len(encoded))
            video_tokens = [t * h * w // self.merge**2 for t, h, w in data["video_grid_thw"].tolist()]
        expanded = [self._expand(t, "<|image_pad|>", image_tokens) for t in text]
        expanded = [self._expand(t, "<|video_pad|>", video_tokens) for t in expanded]
        tokens = self.tokenizer(expanded, padding=padding, return_tensors="pt", add_special_tokens=add_special_tokens)
        data.update(tokens)
        image_id, video_id = self.tokenizer.convert_tokens_to_ids(["<|image_pad|>", "<|video_pad|>"])
        ids = tokens["input_ids"]
        data["mm_token_type_ids"] = (ids == image_id).int() + 2 * (ids == video_id).int()
        return BatchFeature(data)

    @staticmethod
    def _expand(text: str, token: str, counts: list[int]) -> str:
        """Replace each placeholder, in order, by its count of tokens (counts are consumed across calls)."""
        parts = text.split(token)
        out = parts[0]
        for part in parts[1:]:
            out += token * counts.pop(0) + part
        return out


def load_processor(path: str | Path):
    """The stock processor of a world model, on the PIL backend the world models are trained with (also
    where torchvision is installed); for Qwen2.5-VL, whose video processor has no PIL backend, QwenInputs."""
    try:
        return AutoProcessor.from_pretrained(path, backend="pil")
    except (AttributeError, ImportError, ValueError, TypeError):
        if (Path(path) / "video_preprocessor_config.json").exists():
            return QwenInputs(path)
        raise


def tokenizer_of(processor):
    return getattr(processor, "tokenizer", processor)


def encode(
    processor,
    conversations: list[list[dict]],
    images: list[list[Image.Image]],
    videos: list[list[Image.Image] | None],
    add_generation_prompt: bool = False,
    padding_side: str = "right",
) -> BatchFeature:
    """Batch the conversations (chat messages) with their images (per row) and videos (per row)."""
    tok = tokenizer_of(processor)
    tok.padding_side = padding_side
    texts = [
        tok.apply_chat_template(c, tokenize=False, add_generation_prompt=add_generation_prompt) for c in conversations
    ]
    flat_images = [im for row in images for im in row]
    flat_videos = [v for v in videos if v]
    return processor_inputs(processor, texts, flat_images, flat_videos, video_fps=VIDEO_FPS, padding=True)


def one_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """The token id of each word, which must be a single token of this tokenizer (loss targets that
    name a word by one position rely on it)."""
    ids = []
    for word in words:
        tokens = tokenizer(word, add_special_tokens=False).input_ids
        if len(tokens) != 1:
            raise ValueError(f"{word!r} is {len(tokens)} tokens in this tokenizer; it must be one")
        ids.append(tokens[0])
    return ids


def assistant_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """Labels for causal-LM training: assistant content (and its <|im_end|>) kept, the rest -100."""
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    role = tokenizer("assistant\n", add_special_tokens=False).input_ids
    labels = torch.full_like(input_ids, -100)
    for row, ids in enumerate(input_ids.tolist()):
        inside = False
        for i, tid in enumerate(ids):
            if tid == start:
                inside = ids[i + 1 : i + 1 + len(role)] == role
                skip_until = i + len(role)
                continue
            if inside and i > skip_until:
                labels[row, i] = tid
                if tid == end:
                    inside = False
    return labels
