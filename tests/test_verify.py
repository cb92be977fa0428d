"""Tree verification gives the same logits as a plain forward over each root-to-node path."""

import pytest
import tiny
import torch

from specflash import Draft, DraftConfig, TreeConfig
from specflash.accept import Acceptance
from specflash.draft import Drafter
from specflash.generate import _catch_up_inputs
from specflash.tree import grow

ATOL = 1e-4  # float32; observed differences are ~1e-6


def sequential_logits(target, inputs, row: int, tokens: list[int]) -> torch.Tensor:
    """Logits at the last position of one unpadded row extended by `tokens`, no cache, no tree."""
    batch = tiny.row_inputs(inputs, row, tokens)
    if batch.get("pixel_values") is not None and batch["pixel_values"].shape[0] == 0:
        del batch["pixel_values"]
    with torch.inference_mode():
        return target.model(**batch).logits[0, -1].float()


def path_tokens(tree, row: int, node: int) -> list[int]:
    tokens = []
    while node >= 0:
        tokens.append(int(tree.tokens[row, node]))
        node = int(tree.parents[row, node])
    return tokens[::-1]


CASES = {
    "llava-batch": (tiny.llava, lambda: tiny.llava_inputs([1, 0, 2], seed=1)),
    "qwen-image-video": (tiny.qwen, lambda: tiny.qwen_inputs(images=1, video_frames=4, seed=1)),
    "llama-batch": (tiny.llama, lambda: tiny.text_inputs(rows=2, seed=1)),
}


@pytest.mark.parametrize("case", CASES)
def test_tree_logits_equal_sequential_logits(case: str) -> None:
    make, make_inputs = CASES[case]
    target, raw = make(seed=1), make_inputs()
    inputs = target.prepare(raw)
    drafter = Drafter(Draft.for_target(target, DraftConfig(), seed=1), target)
    state, prefill = target.prefill(inputs)
    root = prefill.logits.argmax(-1)
    root_logp = drafter.start(prefill, root)
    rows = root.shape[0]
    history: list[list[int]] = [[] for _ in range(rows)]
    for cycle in range(2):
        drafter.begin_tree()
        tree = grow(TreeConfig(depth=4, top_k=3, total_tokens=12), root, root_logp, drafter.step)
        drafter.end_tree()
        logits, features = target.verify(state, tree.tokens, tree.ancestors, tree.depths)
        for row in range(rows):
            for node in range(tree.size):
                expected = sequential_logits(target, raw, row, history[row] + path_tokens(tree, row, node))
                torch.testing.assert_close(logits[row, node], expected, atol=ATOL, rtol=0)
        # Keep paths of different lengths per row, so the next cycle runs over a cache with holes.
        deepest = [int(tree.depths[row].argmax()) for row in range(rows)]
        chosen = [deepest[row] if (row + cycle) % 2 == 0 else 0 for row in range(rows)]
        paths = [[n for n in range(tree.size) if tree.ancestors[row, chosen[row], n]] for row in range(rows)]
        width = max(len(p) for p in paths)
        result = Acceptance(
            path=torch.tensor([p + [0] * (width - len(p)) for p in paths]),
            length=torch.tensor([len(p) for p in paths]),
            bonus=logits[torch.arange(rows), torch.tensor(chosen)].argmax(-1),
        )
        target.keep(state, tree.size, result.path, result.length)
        for row in range(rows):
            history[row] += [int(tree.tokens[row, n]) for n in paths[row]]
        root_logp = drafter.catch_up(*_catch_up_inputs(tree, result, features))
        root = result.bonus
