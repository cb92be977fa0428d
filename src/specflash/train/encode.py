"""A conversation -> the target processor's inputs and an assistant-only loss mask.

The mask comes from the chat template: templates with `{% generation %}` markers give it through
`apply_chat_template(..., return_assistant_tokens_mask=True)`. Templates without them (the stock LLaVA-1.5
and Qwen2.5-VL ones) use offsets: each assistant message's text is found, in order, in the rendered
prompt, and the tokens overlapping it are masked in, plus the special token right after it (the end of
the turn, which the draft must also learn to propose). Both are computed on the text before the
processor expands each image placeholder into its visual tokens, then carried over to the expanded ids.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from specflash.prompting import adds_special_tokens, processor_inputs
from specflash.targets import Target
from specflash.train.sources import Conversation
from specflash.world.processing import VIDEO_FPS

GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")
VIDEO_FAMILIES = ("qwen2_5_vl",)


def tokenizer_of(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def media_token_ids(target: Target) -> set[int]:
    """Placeholder ids the processor expands into visual tokens."""
    config = target.model.config
    names = ("image_token_id", "image_token_index", "video_token_id")
    return {int(getattr(config, n)) for n in names if getattr(config, n, None) is not None}


def fit_media(target: Target, conversation: Conversation) -> tuple[list[dict], list, list]:
    """Messages, images and videos as the target's processor takes them: a video becomes a run of
    images for families without video input; media sent to a text-only target is an error."""
    family = target.family_name
    if family == "text" and (conversation.images or conversation.video):
        raise ValueError(f"conversation {conversation.key!r} has images or a video, but the target is text-only")
    if conversation.video is None or family in VIDEO_FAMILIES:
        videos = [conversation.video] if conversation.video is not None else []
        return conversation.messages, list(conversation.images), videos
    frames = conversation.video
    messages = []
    for message in conversation.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [q for p in content for q in ([{"type": "image"}] * len(frames) if p["type"] == "video" else [p])]
        messages.append({**message, "content": content})
    video_at = _video_image_index(conversation.messages)
    images = [*conversation.images[:video_at], *frames, *conversation.images[video_at:]]
    return messages, images, []


def _video_image_index(messages: list[dict]) -> int:
    """How many images precede the video entry."""
    count = 0
    for message in messages:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part["type"] == "video":
                return count
            count += part["type"] == "image"
    return count


def assistant_mask(tokenizer: Any, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(token ids, mask) of the rendered conversation before media expansion."""
    template = tokenizer.chat_template or ""
    if GENERATION_MARKER.search(template):
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        return list(out["input_ids"]), list(out["assistant_masks"])
    return assistant_mask_by_offsets(tokenizer, messages)


def assistant_mask_by_offsets(tokenizer: Any, messages: list[dict]) -> tuple[list[int], list[int]]:
    """The offset method of the module docstring, for templates without generation markers."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "the chat template has no {% generation %} markers and the tokenizer is not a fast one "
            "(offsets are needed to find the assistant tokens)"
        )
    out = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = out["input_ids"], out["offset_mapping"]
    mask, cursor = [0] * len(ids), 0
    special = set(tokenizer.all_special_ids)
    for message in messages:
        if message["role"] != "assistant":
            continue
        answer = _text_of(message)
        start = text.find(answer, cursor)
        if not answer or start < 0:
            raise ValueError(f"assistant text {answer[:40]!r} not found in the rendered chat template output")
        end, cursor = start + len(answer), start + len(answer)
        last = -1
        for i, (a, b) in enumerate(offsets):
            if b > start and a < end:
                mask[i], last = 1, i
        if 0 <= last < len(ids) - 1 and ids[last + 1] in special:
            mask[last + 1] = 1
    return ids, mask


def _text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def expand_mask(short_ids: list[int], short_mask: list[int], long_ids: list[int], media_ids: set[int]) -> list[int]:
    """Carry a mask over the processor's expansion of each media placeholder into a run of them (adjacent
    placeholders, as a video's frames sent as images, merge into one run)."""
    if len(short_ids) != len(short_mask):
        raise ValueError("token ids and mask differ in length")
    mask, i, j = [], 0, 0
    while i < len(short_ids):
        token = short_ids[i]
        if j >= len(long_ids) or long_ids[j] != token:
            raise ValueError(
                "the processor's token ids do not match the chat template's (the mask cannot be "
                f"carried over) at template token {i}"
            )
        if token in media_ids:
            while i < len(short_ids) and short_ids[i] == token:
                i += 1
            run = j
            while run < len(long_ids) and long_ids[run] == token:
                run += 1
            mask += [0] * (run - j)
            j = run
        else:
            mask.append(short_mask[i])
            i, j = i + 1, j + 1
    if j != len(long_ids):
        raise ValueError("the processor's token ids are longer than the chat template's")
    return mask


def encode_conversation(
    target: Target, conversation: Conversation, add_generation_prompt: bool = False
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Processor inputs (batch of one) and the bool loss mask [L] (assistant tokens)."""
    processor = target.processor
    if processor is None:
        raise ValueError("the target has no processor or tokenizer: it cannot encode conversations")
    tokenizer = tokenizer_of(processor)
    if not tokenizer.chat_template:
        raise ValueError("the target's tokenizer has no chat template")
    messages, images, videos = fit_media(target, conversation)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    # The same rule as at inference, so the draft trains on the features it will see.
    special = adds_special_tokens(tokenizer, text)
    encoder = tokenizer if target.family_name == "text" else processor
    inputs = dict(processor_inputs(encoder, [text], images, videos, video_fps=VIDEO_FPS, add_special_tokens=special))
    if add_generation_prompt:
        return inputs, torch.zeros(inputs["input_ids"].shape[1], dtype=torch.bool)
    short_ids, short_mask = assistant_mask(tokenizer, messages)
    if not any(short_mask):
        raise ValueError(f"conversation {conversation.key!r}: no assistant tokens found by the chat template")
    mask = expand_mask(short_ids, short_mask, inputs["input_ids"][0].tolist(), media_token_ids(target))
    return inputs, torch.tensor(mask, dtype=torch.bool)
