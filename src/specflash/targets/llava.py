"""LLaVA (`LlavaForConditionalGeneration`): one or several images, each a contiguous run of image tokens."""

from __future__ import annotations

import torch

from specflash.targets.family import Family, VisualSpan, count_tokens


class LlavaFamily(Family):
    name = "llava"
    model_types = ("llava",)
    media_keys = ("pixel_values", "image_sizes")

    @property
    def tokens_per_image(self) -> int:
        config = self.model.config
        vision = config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        return patches + (1 if config.vision_feature_select_strategy == "full" else 0)

    def validate(self, inputs: dict[str, torch.Tensor]) -> None:
        image_tokens = count_tokens(inputs["input_ids"], self.model.config.image_token_id)
        pixels = inputs.get("pixel_values")
        images = 0 if pixels is None else pixels.shape[0]
        if image_tokens != images * self.tokens_per_image:
            raise ValueError(
                f"the prompt holds {image_tokens} image tokens but {images} image(s) were given; each image "
                f"takes {self.tokens_per_image} tokens, so expected {images * self.tokens_per_image}. "
                "Put one image placeholder in the prompt per image and let the processor expand it."
            )

    def visual_spans(self, inputs: dict[str, torch.Tensor]) -> list[list[VisualSpan]]:
        per_image = self.tokens_per_image
        is_image = inputs["input_ids"] == self.model.config.image_token_id
        spans, media = [], 0
        for row in is_image:
            where = row.nonzero().flatten().tolist()
            row_spans = []
            for first in range(0, len(where), per_image):
                row_spans.append(VisualSpan(where[first], per_image, "image", media))
                media += 1
            spans.append(row_spans)
        return spans
