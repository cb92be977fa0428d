"""Tree builders: shapes, parents-first order, ancestor closure, group passes, the static layout."""

import math

import pytest
import torch

from specflash.tree import TreeConfig, grow


def fake_step(vocab: int, k: int, seed: int):
    """Stands in for Drafter.step: random distributions, and a record of each call."""
    generator = torch.Generator().manual_seed(seed)
    calls = []

    def step(tokens, parents, anchors, slots, wanted) -> torch.Tensor:
        calls.append({"tokens": tokens, "parents": parents, "anchors": anchors, "slots": slots, "wanted": wanted})
        return torch.randn(*wanted.shape, k, vocab, generator=generator).log_softmax(-1)

    return step, calls


def check_tree(tree) -> None:
    for row in range(tree.tokens.shape[0]):
        parents = tree.parents[row].tolist()
        assert parents[0] == -1 and all(0 <= p < i for i, p in enumerate(parents) if i)
        for node in range(1, tree.size):
            assert tree.depths[row, node] == tree.depths[row, parents[node]] + 1
            expected, walk = {node}, parents[node]
            while walk >= 0:
                expected.add(walk)
                walk = parents[walk]
            assert set(tree.ancestors[row, node].nonzero().flatten().tolist()) == expected
        siblings: dict[int, list[int]] = {}
        for node in range(1, tree.size):
            siblings.setdefault(parents[node], []).append(int(tree.tokens[row, node]))
        assert all(len(set(s)) == len(s) for s in siblings.values())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_dynamic_tree_is_closed_and_costs_one_pass_per_group(k: int) -> None:
    config = TreeConfig(depth=6, top_k=4, total_tokens=30)
    step, calls = fake_step(50, k, 0)
    root = torch.tensor([3, 7])
    tree = grow(config, root, torch.randn(2, k, 50).log_softmax(-1), step)
    assert tree.tokens.shape == (2, 31) and bool((tree.tokens[:, 0] == root).all())
    assert tree.max_depth <= config.depth
    # With the catch-up pass that produced root_logp, a depth-6 proposal costs ceil(6 / k) forwards.
    assert 1 + len(calls) == math.ceil(config.depth / k)
    for call in calls:
        # Every entry's parent is the group's anchor or an earlier entry.
        assert call["tokens"].shape[1] == k * config.top_k
        assert bool((call["slots"] < k).all())
    check_tree(tree)


def test_static_tree_follows_its_paths() -> None:
    paths = ((0,), (1,), (0, 0), (0, 2), (0, 0, 1))
    step, calls = fake_step(20, 1, 1)
    root_logp = torch.randn(1, 1, 20).log_softmax(-1)
    tree = grow(TreeConfig(paths=paths), torch.tensor([5]), root_logp, step)
    ranked = root_logp[0, 0].topk(3).indices
    assert tree.tokens[0, 1:3].tolist() == [int(ranked[0]), int(ranked[1])]
    assert tree.parents[0].tolist() == [-1, 0, 0, 1, 1, 3]
    assert len(calls) == 2  # depths 1 and 2 hold nodes with children
    assert calls[0]["parents"].tolist() == [[-1, -1]] and calls[0]["wanted"].tolist() == [[0]]
    check_tree(tree)


def test_static_tree_with_slots_reads_levels_from_one_pass() -> None:
    paths = ((0, 0, 0, 0), (0, 1), (1,))
    step, calls = fake_step(20, 2, 2)
    root_logp = torch.randn(1, 2, 20).log_softmax(-1)
    tree = grow(TreeConfig(paths=paths), torch.tensor([5]), root_logp, step)
    # Depths 1 and 2 come from the root's two slots; one pass anchored at (0, 0) gives depths 3 and 4.
    assert len(calls) == 1
    second_level = root_logp[0, 1].topk(2).indices
    node = {p: i + 1 for i, p in enumerate(TreeConfig(paths=paths).paths)}
    assert int(tree.tokens[0, node[(0, 1)]]) == int(second_level[1])
    assert int(tree.tokens[0, node[(0, 0)]]) == int(second_level[0])
    check_tree(tree)


def test_static_paths_are_closed_under_prefixes() -> None:
    assert TreeConfig(paths=((0, 1, 2),)).paths == ((0,), (0, 1), (0, 1, 2))
