"""The feature store a dump writes and training reads: sharded safetensors plus a JSON index.

    DIR/index.json                 settings of the dump and the finished shards
    DIR/shard-00000.safetensors    per sample n: "n.input_ids" int32 [L], "n.loss_mask" uint8 [L],
                                   "n.features" [L, D] (f), "n.visual_embeds" [V, D] (e at visual
                                   positions, in span order), "n.spans" int64 [S, 4] (start, length,
                                   kind 0 image / 1 video, media)

Text embeddings are not stored: they are `target.embed(input_ids)`, rebuilt per batch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from specflash.targets.family import VisualSpan

INDEX_FILE = "index.json"
FORMAT = "specflash-features"
VERSION = 1
KINDS = ("image", "video")
STORAGE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Record:
    """What draft training needs from one conversation, unpadded."""

    input_ids: torch.Tensor  # [L] long
    loss_mask: torch.Tensor  # [L] bool, True at assistant tokens
    features: torch.Tensor  # [L, D] the target's final hidden states f
    visual_embeds: torch.Tensor  # [V, D] input embeddings at the span positions, in span order
    spans: list[VisualSpan]

    def visual_positions(self) -> torch.Tensor:
        """Positions of `visual_embeds`' rows, in order."""
        ranges = [torch.arange(s.start, s.start + s.length) for s in self.spans]
        return torch.cat(ranges) if ranges else torch.zeros(0, dtype=torch.long)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def write_json_atomic(path: Path, data: Any) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def write_shard(path: Path, first_index: int, records: list[Record], dtype: torch.dtype) -> None:
    """Write records numbered from `first_index`; atomic, so a killed dump leaves no half shard."""
    tensors: dict[str, torch.Tensor] = {}
    for offset, record in enumerate(records):
        key = str(first_index + offset)
        spans = [[s.start, s.length, KINDS.index(s.kind), s.media] for s in record.spans]
        tensors[f"{key}.input_ids"] = record.input_ids.to(torch.int32)
        tensors[f"{key}.loss_mask"] = record.loss_mask.to(torch.uint8)
        tensors[f"{key}.features"] = record.features.to(dtype)
        tensors[f"{key}.visual_embeds"] = record.visual_embeds.to(dtype)
        tensors[f"{key}.spans"] = torch.tensor(spans, dtype=torch.long).reshape(-1, 4)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    temporary = path.with_suffix(".tmp")
    save_file(tensors, str(temporary), metadata={"format": FORMAT})
    os.replace(temporary, path)


def read_index(directory: Path) -> dict[str, Any]:
    path = directory / INDEX_FILE
    if not path.is_file():
        raise ValueError(f"{directory} is not a feature dump: {INDEX_FILE} is missing (run `specflash dump`)")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a specflash feature index (format {index.get('format')!r})")
    if index.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported feature format version {index.get('version')}; expected {VERSION}")
    return index


class FeatureStore:
    """Random access to the records of a finished dump; shards are memory-mapped on demand."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index = read_index(self.directory)
        if not self.index.get("complete"):
            raise ValueError(
                f"{self.directory}: the dump is unfinished; rerun `specflash dump` with the same "
                "arguments to complete it"
            )
        self._where: dict[int, str] = {}
        for shard in self.index["shards"]:
            path = self.directory / shard["file"]
            if not path.is_file():
                raise ValueError(f"{self.directory}: shard {shard['file']} is listed in the index but missing")
            for n in range(shard["first"], shard["first"] + shard["samples"]):
                self._where[n] = shard["file"]
        self._ids = sorted(self._where)
        self._open: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def target(self) -> dict[str, Any]:
        return self.index["target"]

    def __getitem__(self, position: int) -> Record:
        n = self._ids[position]
        name = self._where[n]
        if name not in self._open:
            self._open[name] = safe_open(str(self.directory / name), framework="pt")
        shard = self._open[name]
        spans = [VisualSpan(int(a), int(b), KINDS[int(c)], int(d)) for a, b, c, d in shard.get_tensor(f"{n}.spans")]
        return Record(
            input_ids=shard.get_tensor(f"{n}.input_ids").long(),
            loss_mask=shard.get_tensor(f"{n}.loss_mask").bool(),
            features=shard.get_tensor(f"{n}.features"),
            visual_embeds=shard.get_tensor(f"{n}.visual_embeds"),
            spans=spans,
        )
