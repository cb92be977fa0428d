"""Stage 2's packed batches: each sample computes, in the packed row, what it computes alone."""

from dataclasses import dataclass, field, replace

import pytest
import torch

from specflash.world.build import new_model
from specflash.world.data_parallel import Group
from specflash.world.packing import pack, use_packed_attention
from specflash.world.processing import load_processor
from specflash.world.train import TrainConfig, _batch, _loss, task_mix
from specflash.world.vision_speed import use_fast_vision


@dataclass(frozen=True)
class _Alone(Group):
    """Sample `rank` of a batch of `size` on its own, its sums divided by the whole batch's counts, as a
    process of `size` would: `counts` holds them once every sample has reported its own."""

    reported: list = field(default_factory=list)
    counts: torch.Tensor | None = None

    def total(self, counts: torch.Tensor) -> torch.Tensor:
        self.reported.append(counts)
        return counts if self.counts is None else self.counts


def _loss_and_gradients(model, processor, cfg: TrainConfig, group: Group) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = _loss(model, processor, cfg, 0, group)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


CASES = [
    # videos, questions with lookup targets, and the change loss; samples of unequal length
    ("world-qwen-tiny", {"instruct": 0.4, "video": 0.3, "drill": 0.3}, 1.0, 1.0),
    ("world-llava-tiny", {"instruct": 0.5, "caption": 0.5}, 1.0, 0.0),
    ("world-text-tiny", None, 0.0, 0.0),
]


@pytest.mark.parametrize(("name", "mix", "lookup", "change"), CASES)
def test_a_packed_batch_computes_what_its_samples_compute_alone(tmp_path, name, mix, lookup, change):
    torch.set_num_threads(1)
    model = new_model(name, "tiny", tmp_path, 0)
    model.train()
    use_fast_vision(model)
    use_packed_attention(model)
    processor = load_processor(tmp_path)
    cfg = TrainConfig(name=name, out=str(tmp_path), batch=4, lookup_loss_weight=lookup, change_loss_weight=change)
    cfg = replace(cfg, mix=task_mix(name, mix))
    batch, samples = _batch(processor, cfg, range(cfg.batch))
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # packing drops padding
    if name == "world-qwen-tiny":
        assert {s.task for s in samples} >= {"video", "drill"}

    packed_loss, packed = _loss_and_gradients(model, processor, cfg, Group())
    alone = [_Alone(rank=i, size=cfg.batch) for i in range(cfg.batch)]
    with torch.no_grad():
        for group in alone:
            _loss(model, processor, cfg, 0, group)
    counts = sum(group.reported[0] for group in alone)
    losses, gradients = zip(
        *(_loss_and_gradients(model, processor, cfg, replace(g, counts=counts)) for g in alone), strict=True
    )
    assert packed_loss == pytest.approx(sum(losses), rel=1e-5)
    scale = max(g.abs().max() for g in packed.values())
    for name_, grad in packed.items():
        summed = sum(g[name_] for g in gradients if name_ in g)
        assert torch.allclose(grad, summed, rtol=1e-4, atol=1e-5 * float(scale)), name_


def test_pack_lays_the_samples_end_to_end_with_their_own_positions(tmp_path):
    model = new_model("world-llava-tiny", "tiny", tmp_path, 0)
    cfg = replace(TrainConfig(name="world-llava-tiny", out=str(tmp_path), batch=3), mix={"caption": 1.0})
    batch, _ = _batch(load_processor(tmp_path), cfg, range(3))
    lengths = batch["attention_mask"].sum(1).tolist()
    packed = pack(model, batch)
    assert packed.starts == [0, lengths[0], lengths[0] + lengths[1]]
    assert packed.inputs["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in packed.inputs
    assert packed.inputs["position_ids"][0].tolist() == [p for n in lengths for p in range(n)]
    assert torch.equal(packed.inputs["labels"][0, : lengths[0]], batch["labels"][0, : lengths[0]])
    assert torch.equal(packed.inputs["pixel_values"], batch["pixel_values"])


def test_pack_refuses_what_it_cannot_pack(tmp_path):
    model = new_model("world-text-tiny", "tiny", tmp_path, 0)
    ids = torch.ones(2, 4, dtype=torch.long)
    left_padded = {"input_ids": ids, "attention_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])}
    with pytest.raises(ValueError, match="right-padded"):
        pack(model, left_padded)
    labelled = {"input_ids": ids, "attention_mask": torch.ones(2, 4, dtype=torch.long), "labels": ids}
    with pytest.raises(ValueError, match="first token is labelled"):
        pack(model, labelled)
