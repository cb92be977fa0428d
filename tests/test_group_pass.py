"""The rehearsed group pass of training (training-time test) computes what the drafter computes at
inference: for each root, the tree group of true next tokens fed with the slots' own predicted features."""

import pytest
import tiny
import torch

from specflash import Draft, DraftConfig
from specflash.draft import Drafter
from specflash.targets.target import Prefill

TAIL = [5, 9, 14, 3, 22, 7, 11, 30]  # text after the last visual span, where the roots lie


def with_tail(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every row (left-padded) extended by TAIL."""
    tail = torch.tensor(TAIL).expand(inputs["input_ids"].shape[0], -1)
    out = dict(inputs, input_ids=torch.cat([inputs["input_ids"], tail], 1))
    out["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(tail)], 1)
    return out


CASES = {
    "llava, two rows with different images": (tiny.llava, lambda: with_tail(tiny.llava_inputs([2, 1], seed=1))),
    "qwen, image and video frame groups": (
        tiny.qwen,
        lambda: tiny.row_inputs(tiny.qwen_inputs(images=1, video_frames=4, seed=1), 0, TAIL),
    ),
    "text, two rows": (tiny.llama, lambda: tiny.text_inputs(rows=2, length=10, seed=1)),
}


def drafter_group(draft: Draft, target, prefill: Prefill, ids: torch.Tensor, row: int, root: int) -> torch.Tensor:
    """Features [n, k, D] the drafter predicts for the group of true tokens after `root` in `row`."""
    length = ids.shape[1]
    prefix = Prefill(
        logits=prefill.logits[row : row + 1],
        features=prefill.features[row : row + 1, : root + 1],
        embeds=prefill.embeds[row : row + 1, : root + 1],
        attention_mask=prefill.attention_mask[row : row + 1, : root + 1],
        spans=[prefill.spans[row]],
    )
    drafter = Drafter(draft, target)
    drafter.start(prefix, ids[row : row + 1, root + 1])
    drafter.begin_tree()
    n = min(draft.config.k, length - root - 2)
    levels = torch.arange(n)[None]
    drafter.step(ids[row : row + 1, root + 2 : root + 2 + n], levels - 1, torch.full_like(levels, -1), levels, levels)
    return drafter.entry_features[0]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("config", [DraftConfig(k=3, latents=4), DraftConfig(k=1)], ids=["flash", "eagle"])
def test_group_pass_equals_the_drafters(case: str, config: DraftConfig) -> None:
    make_target, make_inputs = CASES[case]
    target = make_target(seed=0)
    batch = target.prepare(make_inputs())
    _, prefill = target.prefill(batch)
    draft = Draft.for_target(target, config, seed=3)
    ids, length = batch["input_ids"], batch["input_ids"].shape[1]
    roots = torch.zeros(ids.shape, dtype=torch.bool)
    # After every visual span; the last group is cut short. A second row has no roots (the pass pads it).
    chosen = [[length - 7, length - 5, length - 3], []]
    for row in range(ids.shape[0]):
        roots[row, chosen[row]] = True
    with torch.no_grad():
        _, group = draft.forward_sequence(
            prefill.features, prefill.embeds, prefill.attention_mask, prefill.spans, roots
        )
    k = draft.config.k
    for row in range(ids.shape[0]):
        for index, root in enumerate(chosen[row]):
            expected = drafter_group(draft, target, prefill, ids, row, root)
            n = expected.shape[0]
            entries = slice(index * k, index * k + n)
            assert group.first[row, entries].tolist() == list(range(root + 2, root + 2 + n))
            assert (group.first[row, index * k + n : (index + 1) * k] == -1).all()
            torch.testing.assert_close(group.features[row, entries], expected, atol=1e-5, rtol=1e-4)
    assert (group.first[1:] == -1).all()
