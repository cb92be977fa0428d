"""The world tokenizer (byte-level BPE trained on world texts) and the chat template.

One vocabulary serves every world model; the template differs only in how an image or a video is
written into the prompt, which is each family's own convention (LLaVA: `<image>`; Qwen2.5-VL:
`<|vision_start|><|image_pad|><|vision_end|>`). `{% generation %}` marks assistant content so
`apply_chat_template(..., return_assistant_tokens_mask=True)` works.
"""

from __future__ import annotations

from collections.abc import Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .tasks import TASKS, make_samples

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
LLAVA_IMAGE = "<image>"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END, LLAVA_IMAGE, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]
VOCAB_SIZE = 1024
CORPUS_SAMPLES_PER_TASK = 1500

PLACEHOLDERS = {
    "llava": (LLAVA_IMAGE, LLAVA_IMAGE),  # LLaVA has no video input; a video entry is never sent to it
    "qwen": (VISION_START + IMAGE_PAD + VISION_END, VISION_START + VIDEO_PAD + VISION_END),
    "text": ("", ""),
}


def chat_template(family: str) -> str:
    image, video = PLACEHOLDERS[family]
    return (
        "{%- for message in messages -%}"
        "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}"
        "{%- set parts = [{'type': 'text', 'text': message['content']}] -%}"
        "{%- else -%}{%- set parts = message['content'] -%}{%- endif -%}"
        "{%- if message['role'] == 'assistant' -%}"
        "{%- generation -%}"
        "{%- for part in parts -%}{{- part['text'] -}}{%- endfor -%}{{- '<|im_end|>' -}}"
        "{%- endgeneration -%}"
        "{%- else -%}"
        "{%- for part in parts -%}"
        f"{{%- if part['type'] == 'image' -%}}{{{{- '{image}' -}}}}"
        f"{{%- elif part['type'] == 'video' -%}}{{{{- '{video}' -}}}}"
        "{%- else -%}{{- part['text'] -}}{%- endif -%}"
        "{%- endfor -%}{{- '<|im_end|>' -}}"
        "{%- endif -%}"
        "{{- '\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


def world_corpus(samples_per_task: int = CORPUS_SAMPLES_PER_TASK) -> Iterator[str]:
    for task in TASKS:
        for sample in make_samples(task, "train", samples_per_task, seed=-1):
            for message in sample.messages:
                yield "".join(part.get("text", "") for part in message["content"])
            yield "assistant\nuser\n"


def train_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Deterministic: the corpus is seeded and BPE training is deterministic on one corpus."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(world_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
