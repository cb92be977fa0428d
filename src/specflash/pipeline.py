"""`specflash.load()`: a target, its draft and the chat plumbing around them, ready to answer prompts.

    pipe = specflash.load()                      # the embedded default: world-llava-tiny + its FLASH draft
    pipe.chat("Describe the image.", images=[image]).text

Targets are hub ids, directories or shipped world names; drafts are directories or shipped draft names
(src/specflash/assets/drafts/<name>/). When no draft is named and the target has no shipped one, the
pipeline runs with an untrained draft and says so (a warning, `pipe.draft_trained` False): output is
still exactly the target's, only the speed-up is missing.
"""

from __future__ import annotations

import copy
import math
import operator
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from specflash.draft import Draft, DraftConfig
from specflash.generate import GenerationStats, SpeculativeGenerator, autoregressive_generate
from specflash.media import DEFAULT_VIDEO_FPS
from specflash.prompting import adds_special_tokens, processor_inputs
from specflash.targets import Target
from specflash.tree import TreeConfig

DEFAULT_TARGET = "world-llava-tiny"
DRAFTS = Path(__file__).resolve().parent / "assets" / "drafts"
UNTRAINED = "untrained"
# The FLASH shape an untrained stand-in takes: semi-autoregressive head and latent compression.
UNTRAINED_CONFIG = DraftConfig(k=3, latents=16, layers=1)
# Families whose processors take a video; others get a video's frames as a run of images.
VIDEO_FAMILIES = ("qwen2_5_vl",)
ROLES = ("system", "user", "assistant")
PART_TYPES = ("text", "image", "video")
# Text the processors read as media (LLaVA's, Qwen2.5-VL's); the target's processor may name more.
MEDIA_PLACEHOLDERS = ("<image>", "<video>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
# What torch.Generator.manual_seed takes.
SEEDS = range(-(2**63), 2**64)

TextCallback = Callable[[str], None]


class UntrainedDraftWarning(UserWarning):
    """The pipeline drafts with random weights: output is exact, but acceptance (and speed) is low."""


def shipped_drafts() -> list[str]:
    if not DRAFTS.is_dir():
        return []
    return sorted(p.name for p in DRAFTS.iterdir() if (p / "config.json").is_file())


def resolve_draft(name: str | Path) -> Path:
    """A draft directory, or the directory of a shipped draft name; ValueError naming the known drafts."""
    path = Path(name)
    if (path / "config.json").is_file():
        return path
    if (DRAFTS / str(name) / "config.json").is_file():
        return DRAFTS / str(name)
    known = ", ".join(shipped_drafts()) or "none shipped in this installation"
    raise ValueError(f"draft {str(name)!r} is neither a draft directory nor a shipped draft name (known: {known})")


def default_draft_name(target_name: str) -> str:
    """The shipped FLASH draft trained for a shipped world target."""
    return f"{target_name}-flash"


@dataclass
class ChatResult:
    text: str
    token_ids: list[int]  # as generated: the stop token is included when one was produced
    prompt_tokens: int
    stats: GenerationStats
    finish_reason: str  # "stop" (a stop token) or "length" (max_new_tokens reached)

    @property
    def tokens_per_second(self) -> float:
        return self.stats.new_tokens / self.stats.wall_time if self.stats.wall_time else 0.0


class IncrementalDecoder:
    """Token ids in, text deltas out, such that the deltas concatenate exactly to the final text.

    Each step decodes the whole output and emits what was added; a trailing U+FFFD (a byte sequence cut
    in the middle of a character) is held back until the next token completes it.
    """

    def __init__(self, tokenizer: Any, emit: TextCallback | None = None) -> None:
        self.tokenizer, self.emit = tokenizer, emit
        self.ids: list[int] = []
        self.sent = ""

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def add(self, ids: list[int]) -> None:
        self.ids.extend(ids)
        text = self._text()
        stable = text.rstrip("\ufffd")
        if len(stable) > len(self.sent) and stable.startswith(self.sent):
            self._send(stable[len(self.sent) :])

    def finish(self) -> str:
        text = self._text()
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self._send(text[len(self.sent) :])
        return text

    def _send(self, delta: str) -> None:
        self.sent += delta
        if self.emit is not None:
            self.emit(delta)


def _parts(content: Any) -> list[dict]:
    """Message content as a list of parts, each checked: an unknown part must not be dropped unseen."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ValueError(
            f"message content must be a string or a list of parts like {{'type': 'text', 'text': ...}}, "
            f"got {type(content).__name__}"
        )
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES:
            raise ValueError(
                f"message part {part!r} is not one of {{'type': 'text', 'text': str}}, {{'type': 'image'}}, "
                "{'type': 'video'}"
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise ValueError(f"a text part needs 'text' as a string, got {part!r}")
    return content


def _media_list(frames: Any, name: str) -> list[Image.Image]:
    """Images (or a video's frames) as a list of PIL images; a single image is a mistake, not a list of one."""
    if isinstance(frames, Image.Image):
        raise ValueError(f"{name} must be a list of PIL images; got one image (pass {name}=[image])")
    if not isinstance(frames, list | tuple):
        raise ValueError(f"{name} must be a list of PIL images, got {type(frames).__name__}")
    for index, frame in enumerate(frames):
        if not isinstance(frame, Image.Image):
            raise ValueError(
                f"{name}[{index}] is a {type(frame).__name__}, not a PIL image (files load with "
                "specflash.media.load_image / load_video)"
            )
    return list(frames)


def _as_integer(value: Any, name: str, allowed: range, said: str) -> int:
    """An integer argument (numpy integers too, bools not) as a plain int, or ValueError saying what
    `allowed` is."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number not in allowed:
        raise ValueError(f"{name} must be an integer {said}, got {value!r}")
    return number


def _media_placeholders(processor: Any) -> tuple[str, ...]:
    """The strings this processor's tokenizer reads as media placeholder tokens."""
    tokenizer = getattr(processor, "tokenizer", processor)
    named = (getattr(processor, "image_token", None), getattr(processor, "video_token", None))
    vocabulary = getattr(tokenizer, "get_added_vocab", dict)()
    return tuple(sorted({t for t in (*MEDIA_PLACEHOLDERS, *named) if t and t in vocabulary}))


class Pipeline:
    """A loaded target and draft. Thread-safe: generations run one at a time, each with its own caches."""

    def __init__(
        self,
        target: Target,
        draft: Draft,
        tree: TreeConfig | None = None,
        target_name: str = "",
        draft_name: str = "",
        draft_trained: bool = True,
    ) -> None:
        if target.processor is None:
            raise ValueError(f"target {target_name!r} has no processor or tokenizer to turn prompts into ids")
        self.target, self.draft = target, draft
        self.generator = SpeculativeGenerator(target, draft, tree)
        self.target_name, self.draft_name, self.draft_trained = target_name, draft_name, draft_trained
        self._placeholders = _media_placeholders(target.processor)
        self._lock = threading.Lock()

    # -- facts -----------------------------------------------------------------------------------
    @property
    def processor(self) -> Any:
        return self.target.processor

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def takes_images(self) -> bool:
        return self.target.family_name != "text"

    @property
    def takes_video(self) -> bool:
        return self.target.family_name in VIDEO_FAMILIES

    # -- prompts ---------------------------------------------------------------------------------
    def _media_messages(
        self, messages: list[dict], images: list[Image.Image], video: list[Image.Image] | None
    ) -> tuple[list[dict], list[Image.Image]]:
        """Messages with list content, checked against the media; a video becomes a run of images for
        families without video input. Returns the messages and the images in prompt order."""
        messages = list(copy.deepcopy(messages))
        pending, ordered, videos_seen = list(images), [], 0
        for message in messages:
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ValueError("each message must be a dict with 'role' and 'content'")
            if message["role"] == "developer":  # OpenAI's newer name for the system turn, as the server takes it
                message["role"] = "system"
            if message["role"] not in ROLES:
                raise ValueError(f"message role {message['role']!r} is not one of {', '.join(ROLES)}, developer")
            parts = []
            for part in _parts(message["content"]):
                if part["type"] == "text":
                    self._check_text(part["text"])
                    parts.append(part)
                elif part["type"] == "image":
                    if not pending:
                        raise ValueError(f"the messages hold more image entries than the {len(images)} image(s) given")
                    ordered.append(pending.pop(0))
                    parts.append(part)
                elif part["type"] == "video":
                    videos_seen += 1
                    if video is None or videos_seen > 1:
                        raise ValueError("the messages hold a video entry but no video (or more than one) was given")
                    if self.takes_video:
                        parts.append(part)
                    else:
                        parts.extend({"type": "image"} for _ in video)
                        ordered.extend(video)
            message["content"] = parts
        if pending:
            raise ValueError(f"{len(images)} image(s) given but the messages hold only {len(ordered)} image entries")
        if video is not None and not videos_seen:
            raise ValueError("a video was given but the messages hold no video entry")
        if (ordered or video) and not self.takes_images:
            raise ValueError(f"target {self.target_name!r} is a text-only model: it takes no images or video")
        if not self.takes_images:
            for message in messages:  # text-only chat templates expect string content
                message["content"] = "".join(p.get("text", "") for p in message["content"])
        return messages, ordered

    def _check_text(self, text: str) -> None:
        """Refuse placeholder text: the processor would take it for media that was never given."""
        for token in self._placeholders:
            if token in text:
                advice = (
                    "; pass images and video as image/video parts, not as placeholder text" if self.takes_images else ""
                )
                raise ValueError(f"the text contains {token!r}, a media placeholder token of this model{advice}")

    def encode(
        self,
        messages: list[dict],
        images: list[Image.Image] | None = None,
        video: list[Image.Image] | None = None,
        video_fps: float = DEFAULT_VIDEO_FPS,
    ) -> Any:
        """The processor's output for a conversation, with the assistant turn opened."""
        if not isinstance(messages, list | tuple):
            raise ValueError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
        if not (isinstance(video_fps, int | float) and math.isfinite(video_fps) and video_fps > 0):
            raise ValueError(f"video_fps must be a positive number, got {video_fps!r}")
        if not messages:
            raise ValueError("at least one message is needed")
        images = _media_list(images if images is not None else [], "images")
        if video is not None:
            video = _media_list(video, "video")
            if not video:
                raise ValueError("a video needs at least one frame")
        messages, ordered = self._media_messages(messages, images, video)
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        special = adds_special_tokens(self.tokenizer, text)  # the rule training dumps follow too
        encoder = self.processor if self.takes_images else self.tokenizer
        videos = [video] if video is not None and self.takes_video else None
        return processor_inputs(encoder, [text], ordered, videos, video_fps=video_fps, add_special_tokens=special)

    # -- generation ------------------------------------------------------------------------------
    def chat_messages(
        self,
        messages: list[dict],
        images: list[Image.Image] | None = None,
        video: list[Image.Image] | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        stream: TextCallback | None = None,
        speculative: bool = True,
        video_fps: float = DEFAULT_VIDEO_FPS,
    ) -> ChatResult:
        """Answer a conversation in the Hugging Face chat format ({"type": "image"} / {"type": "video"}
        parts mark where `images` and `video` go). `stream` receives text deltas as they are decoded;
        `speculative=False` decodes plainly with the target alone (same harness, for comparisons)."""
        max_new_tokens = _as_integer(max_new_tokens, "max_new_tokens", range(1, SEEDS.stop), ">= 1")
        seed = _as_integer(seed, "seed", SEEDS, "from -2**63 to 2**64 - 1")
        if stream is not None and not callable(stream):
            raise ValueError(f"stream must be a callable taking text, got {type(stream).__name__}")
        inputs = self.encode(messages, images, video, video_fps)
        decoder = IncrementalDecoder(self.tokenizer, stream)
        options = dict(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stream=lambda _row, ids: decoder.add(ids),
        )
        with self._lock:
            if speculative:
                result = self.generator.generate(inputs, **options)
            else:
                result = autoregressive_generate(self.target, inputs, **options)
        ids = result.new_token_ids[0]
        stopped = bool(ids) and ids[-1] in self.target.stop_token_ids
        return ChatResult(
            text=decoder.finish(),
            token_ids=ids,
            prompt_tokens=int(inputs["input_ids"].shape[1]),
            stats=result.stats,
            finish_reason="stop" if stopped else "length",
        )

    def chat(
        self,
        prompt: str,
        images: list[Image.Image] | None = None,
        video: list[Image.Image] | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        stream: TextCallback | None = None,
        speculative: bool = True,
        video_fps: float = DEFAULT_VIDEO_FPS,
    ) -> ChatResult:
        """One user turn: the images (then the video) before the prompt text."""
        if not isinstance(prompt, str):
            raise ValueError(f"the prompt must be a string, got {type(prompt).__name__}")
        images = _media_list(images if images is not None else [], "images")
        content: list[dict] = [{"type": "image"} for _ in images]
        if video is not None:
            content.append({"type": "video"})
        content.append({"type": "text", "text": prompt})
        return self.chat_messages(
            [{"role": "user", "content": content}],
            images,
            video,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stream=stream,
            speculative=speculative,
            video_fps=video_fps,
        )


# -- loading -------------------------------------------------------------------------------------
def _world_models() -> Any:
    # Imported on first load, not with the package: the world's builders pull in many model classes.
    from specflash.world import models

    return models


def _target_dir(name: str) -> Path | None:
    """The directory of a shipped world name or a model directory; None for a hub id ('owner/name').
    Anything else is refused here, before the hub is asked (offline, that takes half a minute of retries)."""
    world_models = _world_models()
    if name in world_models.SHIPPED:
        path = world_models.shipped_path(name)
        if not (path / "model.safetensors").is_file():
            raise ValueError(
                f"the world target {name!r} is not in this installation ({path} holds no model.safetensors); "
                "train it with `specflash world train`, or pass --target with a hub id or a model directory"
            )
        return path
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{name} is not a model directory: config.json is missing")
        return path
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ValueError(f"target {name!r}: no such directory")
    if "/" not in name:
        raise ValueError(
            f"unknown target {name!r}: neither a shipped world target ({', '.join(world_models.SHIPPED)}) nor a "
            "model directory; a hub id ('owner/name') needs network access or the model in the local "
            "Hugging Face cache"
        )
    return None


def load_target(name: str, device: str | None = None) -> Target:
    """A target by hub id, directory or shipped world name."""
    path = _target_dir(name)
    if path is None:
        return Target.from_pretrained(name, device=device)
    processor = None
    if _world_models().is_world_model(path):
        # World targets preprocess as they were trained (PIL), which needs no torchvision for Qwen2.5-VL.
        # Only they: the PIL stand-in sizes video frames for the world recipe, not for other models.
        from specflash.world.processing import load_processor

        processor = load_processor(path)
    return Target.from_pretrained(path, device=device, processor=processor)


def _load_draft(target: Target, target_name: str, draft: str | Path | None) -> tuple[Draft, str, bool]:
    world_models = _world_models()
    if draft is None and target_name in world_models.SHIPPED and default_draft_name(target_name) in shipped_drafts():
        draft = default_draft_name(target_name)
    if draft is None:
        warnings.warn(
            f"no trained draft for {target_name!r}: drafting with an untrained FLASH draft, so output is exact "
            "but acceptance is near zero and there is no speed-up; train one with `specflash train` and pass "
            "--draft",
            UntrainedDraftWarning,
            stacklevel=3,
        )
        return Draft.for_target(target, UNTRAINED_CONFIG), UNTRAINED, False
    loaded = Draft.from_pretrained(resolve_draft(draft), device=target.device, dtype=target.dtype)
    return loaded, str(draft), True


def load(
    target: str | Path | None = None,
    draft: str | Path | None = None,
    tree: TreeConfig | None = None,
    device: str | None = None,
) -> Pipeline:
    """A ready pipeline. `target`: hub id, directory or shipped world name (default world-llava-tiny);
    `draft`: directory or shipped draft name (default: the target's shipped FLASH draft, else an untrained
    one, with an UntrainedDraftWarning)."""
    target_name = str(target) if target is not None else DEFAULT_TARGET
    loaded = load_target(target_name, device)
    draft_model, draft_name, trained = _load_draft(loaded, target_name, draft)
    return Pipeline(loaded, draft_model, tree, target_name, draft_name, trained)
