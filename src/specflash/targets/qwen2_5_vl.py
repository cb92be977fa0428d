"""Qwen2.5-VL (and Qwen2-VL): images and videos, 3-row M-RoPE positions shifted by the rope deltas.

Visual spans: one per image, and one per temporal patch group of a video (`temporal_patch_size` frames
merged into one grid of tokens), the unit the model itself lays out in time.
"""

from __future__ import annotations

import torch

from specflash.targets.family import Family, VisualSpan, count_tokens


class Qwen2_5_VLFamily(Family):
    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl", "qwen2_vl")
    media_keys = (
        "pixel_values",
        "pixel_values_videos",
        "image_grid_thw",
        "video_grid_thw",
        "second_per_grid_ts",
        "mm_token_type_ids",
    )

    @property
    def merge(self) -> int:
        return self.model.config.vision_config.spatial_merge_size

    def _with_token_types(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if inputs.get("mm_token_type_ids") is not None:
            return inputs
        ids, config = inputs["input_ids"], self.model.config
        types = (ids == config.image_token_id).int() + 2 * (ids == config.video_token_id).int()
        return {**inputs, "mm_token_type_ids": types}

    def validate(self, inputs: dict[str, torch.Tensor]) -> None:
        config = self.model.config
        for kind, token_id, grid_key in (
            ("image", config.image_token_id, "image_grid_thw"),
            ("video", config.video_token_id, "video_grid_thw"),
        ):
            tokens = count_tokens(inputs["input_ids"], token_id)
            grid = inputs.get(grid_key)
            expected = 0 if grid is None else int(grid.prod(-1).sum()) // self.merge**2
            if tokens != expected:
                given = 0 if grid is None else grid.shape[0]
                raise ValueError(
                    f"the prompt holds {tokens} {kind} tokens but the {given} {kind}(s) given need "
                    f"{expected}; put one {kind} placeholder in the prompt per {kind} and let the "
                    "processor expand it."
                )

    def prefill(self, inputs, cache):
        return super().prefill(self._with_token_types(inputs), cache)

    def prefill_positions(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if inputs.get("image_grid_thw") is None and inputs.get("video_grid_thw") is None:
            positions, deltas = super().prefill_positions(inputs)
            return positions[None].expand(3, -1, -1), deltas
        positions, deltas = self.model.model.get_rope_index(
            inputs["input_ids"],
            inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"),
            second_per_grid_ts=inputs.get("second_per_grid_ts"),
            attention_mask=inputs["attention_mask"],
        )
        return positions, deltas.flatten()

    def positions(self, text_positions: torch.Tensor, rope_deltas: torch.Tensor) -> torch.Tensor:
        return (text_positions + rope_deltas[:, None])[None].expand(3, -1, -1)

    def visual_spans(self, inputs: dict[str, torch.Tensor]) -> list[list[VisualSpan]]:
        config, merge = self.model.config, self.merge
        spans: list[list[VisualSpan]] = []
        queues = {
            "image": _units(inputs.get("image_grid_thw"), merge, per_frame=False),
            "video": _units(inputs.get("video_grid_thw"), merge, per_frame=True),
        }
        for row in inputs["input_ids"]:
            row_spans = []
            for kind, token_id in (("image", config.image_token_id), ("video", config.video_token_id)):
                where = (row == token_id).nonzero().flatten().tolist()
                taken = 0
                while taken < len(where):
                    length, media = queues[kind].pop(0)
                    row_spans.append(VisualSpan(where[taken], length, kind, media))
                    taken += length
            spans.append(sorted(row_spans, key=lambda span: span.start))
        return spans


def _units(grid: torch.Tensor | None, merge: int, per_frame: bool) -> list[tuple[int, int]]:
    """(token count, media index) of each span, in the order the model consumes them."""
    if grid is None:
        return []
    units = []
    for media, (t, h, w) in enumerate(grid.tolist()):
        per_group = h * w // merge**2
        units.extend([(per_group, media)] * t if per_frame else [(t * per_group, media)])
    return units
