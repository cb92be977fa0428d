"""Conversations to dump, from the synthetic world or from JSON files.

`--data` accepts:
- `world:TASKS[:N[:SEED]]`: N samples (default 100) of each comma-separated world task (caption,
  instruct, video, text) from the world's "train" split, seed SEED (default 0), tasks interleaved;
- a `.json` file holding a list of LLaVA-Instruct items (`{"image": path or [paths], "conversations":
  [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}]}`, `<image>` marking where
  each image goes, paths relative to the file or to --image-root) or of ShareGPT items (the same
  without "image").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from specflash.world.tasks import TASKS, make_sample

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE_MARK = "<image>"
DEFAULT_WORLD_SAMPLES = 100


@dataclass
class Conversation:
    """Chat messages in the Hugging Face format ({"type": "image"} / {"type": "video"} parts mark where
    the media go), the images in prompt order and at most one video (its frames)."""

    messages: list[dict]
    images: list[Image.Image]
    video: list[Image.Image] | None = None
    key: str = ""


class WorldSource:
    """World samples, built on demand (rendering is the slow part, and resume skips finished shards)."""

    def __init__(self, tasks: Sequence[str], per_task: int, seed: int) -> None:
        self.order = [(task, i) for i in range(per_task) for task in tasks]
        self.seed = seed

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> Conversation:
        task, i = self.order[index]
        sample = make_sample(task, "train", self.seed, i)
        return Conversation(sample.messages, sample.images, sample.video, sample.key)


def parse_world_spec(spec: str) -> WorldSource:
    body = spec.removeprefix("world:")
    parts = body.split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"bad world data spec {spec!r}; expected world:TASKS[:N[:SEED]], e.g. world:caption,video:200")
    tasks = parts[0].split(",")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown world tasks {unknown} in {spec!r}; known: {', '.join(TASKS)}")
    try:
        per_task = int(parts[1]) if len(parts) > 1 else DEFAULT_WORLD_SAMPLES
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ValueError(f"bad world data spec {spec!r}: N and SEED must be integers") from None
    if per_task <= 0:
        raise ValueError(f"bad world data spec {spec!r}: N must be > 0")
    return WorldSource(tasks, per_task, seed)


class JsonSource:
    """LLaVA-Instruct or ShareGPT items; images are opened when the item is read."""

    def __init__(self, path: Path, image_root: Path | None) -> None:
        if not path.is_file():
            raise ValueError(f"data file {path} does not exist")
        try:
            items = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(items, list) or not items:
            raise ValueError(f"{path} must hold a non-empty JSON list of conversations")
        self.path, self.items = path, items
        self.image_root = image_root or path.parent

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Conversation:
        item = self.items[index]
        where = f"{self.path} item {index}"
        if not isinstance(item, dict) or not isinstance(item.get("conversations"), list):
            raise ValueError(f"{where}: expected an object with a 'conversations' list")
        image_paths = item.get("image") or []
        image_paths = [image_paths] if isinstance(image_paths, str) else list(image_paths)
        messages = [_message(turn, where) for turn in item["conversations"]]
        marks = sum(p["type"] == "image" for m in messages for p in m["content"])
        if marks != len(image_paths):
            raise ValueError(f"{where}: {len(image_paths)} image(s) but {marks} {IMAGE_MARK} mark(s) in the text")
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError(f"{where}: no assistant ('gpt') turn to learn from")
        images = [_open_image(self.image_root / p, where) for p in image_paths]
        return Conversation(messages, images, None, str(item.get("id", index)))


def _message(turn: dict, where: str) -> dict:
    if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
        raise ValueError(f"{where}: each turn needs 'from' and 'value'")
    role = ROLES.get(turn["from"])
    if role is None:
        raise ValueError(f"{where}: unknown speaker {turn['from']!r}; known: {', '.join(ROLES)}")
    pieces = str(turn["value"]).split(IMAGE_MARK)
    content: list[dict] = []
    for i, piece in enumerate(pieces):
        if i:
            content.append({"type": "image"})
        # LLaVA-Instruct writes "<image>\n" before the question: the newline belongs to the mark.
        text = piece.removeprefix("\n") if i else piece
        if text:
            content.append({"type": "text", "text": text})
    if role == "assistant" and any(p["type"] == "image" for p in content):
        raise ValueError(f"{where}: {IMAGE_MARK} in an assistant turn")
    return {"role": role, "content": content}


def _open_image(path: Path, where: str) -> Image.Image:
    if not path.is_file():
        raise ValueError(f"{where}: image {path} does not exist (set --image-root?)")
    with Image.open(path) as image:
        return image.convert("RGB")


def open_source(spec: str, image_root: str | Path | None = None) -> WorldSource | JsonSource:
    """The conversations named by a --data argument (see the module docstring)."""
    if spec.startswith("world:"):
        return parse_world_spec(spec)
    path = Path(spec)
    if path.suffix != ".json":
        raise ValueError(
            f"unknown data {spec!r}: use world:TASKS[:N[:SEED]] or a .json file (LLaVA-Instruct or ShareGPT format)"
        )
    return JsonSource(path, Path(image_root) if image_root else None)
