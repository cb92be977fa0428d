"""Latent compression: spans shrink to C latents in the draft's sequence and cache, per span kind."""

import json

import pytest
import tiny
import torch

from specflash import Draft, DraftConfig
from specflash.draft import Drafter


def started(target, inputs, latents: int):
    batch = target.prepare(inputs)
    _, prefill = target.prefill(batch)
    drafter = Drafter(Draft.for_target(target, DraftConfig(latents=latents)), target)
    drafter.start(prefill, prefill.logits.argmax(-1))
    return prefill, drafter


def test_llava_images_become_latents_per_image() -> None:
    target = tiny.llava(seed=0)
    prefill, drafter = started(target, tiny.llava_inputs([2], seed=0), latents=4)
    assert [(s.kind, s.length) for s in prefill.spans[0]] == [("image", 16), ("image", 16)]
    length = prefill.attention_mask.shape[1]
    assert drafter.cache.length == length - 2 * 16 + 2 * 4
    assert int(drafter.next_position[0]) == length - 2 * 16 + 2 * 4


def test_qwen_video_has_one_span_per_frame_group() -> None:
    target = tiny.qwen(seed=0)
    prefill, drafter = started(target, tiny.qwen_inputs(images=1, video_frames=8, seed=0), latents=3)
    kinds = [(s.kind, s.length, s.media) for s in prefill.spans[0]]
    assert kinds == [("image", 16, 0)] + [("video", 16, 0)] * 4
    assert drafter.cache.length == prefill.attention_mask.shape[1] - 5 * 16 + 5 * 3


def test_batch_rows_with_different_spans() -> None:
    target = tiny.llava(seed=0)
    prefill, drafter = started(target, tiny.llava_inputs([1, 0, 2], seed=0), latents=2)
    real = prefill.attention_mask.sum(-1)
    images = torch.tensor([1, 0, 2])
    assert drafter.valid.sum(-1).tolist() == (real - images * 16 + images * 2).tolist()
    assert drafter.next_position.tolist() == drafter.valid.sum(-1).tolist()


def test_training_pass_predicts_only_outside_compressed_spans() -> None:
    target = tiny.llava(seed=0)
    batch = target.prepare(tiny.llava_inputs([1], seed=0))
    _, prefill = target.prefill(batch)
    draft = Draft.for_target(target, DraftConfig(k=2, latents=4))
    (predictions,) = draft.forward_sequence(prefill.features, prefill.embeds, prefill.attention_mask, prefill.spans)
    span = prefill.spans[0][0]
    length = prefill.attention_mask.shape[1] - 1
    assert predictions.features.shape == (1, length - span.length + 4, 2, target.hidden_size)
    covered = (predictions.first[0][predictions.first[0] >= 0] - 1).tolist()
    outside = [t for t in range(length) if not span.start <= t < span.start + span.length]
    assert covered == outside


def test_head_and_compressor_are_light() -> None:
    target = tiny.llava(seed=0)
    counts = Draft.for_target(target, DraftConfig(k=3, latents=4)).parameter_counts()
    plain = Draft.for_target(target, DraftConfig()).parameter_counts()
    assert counts["draft"] == plain["draft"] and plain["slot_head"] == plain["compressor"] == 0
    assert 0 < counts["slot_head"] < counts["draft"] and 0 < counts["compressor"] < counts["draft"]


def test_latent_pooling_heads_default_to_the_drafts_and_old_drafts_keep_one(tmp_path) -> None:
    target = tiny.llava(seed=0)
    draft = Draft.for_target(target, DraftConfig(k=1, latents=4))
    assert draft.compressor.heads == draft.config.heads > 1
    draft.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["latent_heads"]  # as written before multi-head pooling
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert Draft.from_pretrained(tmp_path).compressor.heads == 1
    with pytest.raises(ValueError, match="latent_heads"):
        Draft.for_target(target, DraftConfig(latents=4, latent_heads=3))
