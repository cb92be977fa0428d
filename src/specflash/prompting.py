"""How rendered chat prompts become model inputs: one path for inference, training dumps and world training."""

from __future__ import annotations

from typing import Any


def adds_special_tokens(tokenizer: Any, text: str) -> bool:
    """Whether the tokenizer should add its special tokens to a prompt its chat template rendered: yes
    unless the template already wrote the BOS token. LLaVA-1.5's template writes none and the model was
    trained with one; templates that write it (Llama 3) must not get a second. Without a BOS token there
    is nothing to add."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and not text.startswith(bos)


def processor_inputs(
    processor: Any,
    texts: list[str],
    images: list | None = None,
    videos: list | None = None,
    *,
    video_fps: float,
    **options: Any,
) -> Any:
    """Rendered prompts and their media through a processor (or a tokenizer, for text only): images in
    prompt order, each video a list of frames already sampled at `video_fps` frames per second. `options`
    (padding, add_special_tokens) go to the processor as they are."""
    kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", **options}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs.update(videos=videos, fps=video_fps, do_sample_frames=False)
    return processor(**kwargs)
