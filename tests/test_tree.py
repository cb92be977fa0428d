"""Tree builders: shapes, parents-first order, ancestor closure, and the static layout."""

import torch

from specflash.tree import TreeConfig, grow


def fake_step(vocab: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    calls = []

    def step(tokens: torch.Tensor, parent_slots: torch.Tensor) -> torch.Tensor:
        calls.append((tokens.clone(), parent_slots.clone()))
        return torch.randn(*tokens.shape, vocab, generator=generator).log_softmax(-1)

    return step, calls


def test_dynamic_tree_is_closed_and_ordered() -> None:
    config = TreeConfig(depth=5, top_k=4, total_tokens=30)
    step, calls = fake_step(50, 0)
    root = torch.tensor([3, 7])
    tree = grow(config, root, torch.randn(2, 50).log_softmax(-1), step)
    assert tree.tokens.shape == (2, 31) and bool((tree.tokens[:, 0] == root).all())
    assert len(calls) == config.depth - 1
    for row in range(2):
        parents = tree.parents[row].tolist()
        assert parents[0] == -1 and all(0 <= p < i for i, p in enumerate(parents) if i)
        for node in range(1, tree.size):
            assert tree.depths[row, node] == tree.depths[row, parents[node]] + 1
            expected = {node}
            walk = parents[node]
            while walk >= 0:
                expected.add(walk)
                walk = parents[walk]
            assert set(tree.ancestors[row, node].nonzero().flatten().tolist()) == expected
        siblings = {}
        for node in range(1, tree.size):
            siblings.setdefault(parents[node], []).append(int(tree.tokens[row, node]))
        assert all(len(set(s)) == len(s) for s in siblings.values())


def test_static_tree_follows_its_paths() -> None:
    paths = ((0,), (1,), (0, 0), (0, 2), (0, 0, 1))
    step, calls = fake_step(20, 1)
    root_logp = torch.randn(1, 20).log_softmax(-1)
    tree = grow(TreeConfig(paths=paths), torch.tensor([5]), root_logp, step)
    ranked = root_logp[0].topk(3).indices
    assert tree.tokens[0, 1:3].tolist() == [int(ranked[0]), int(ranked[1])]
    assert tree.parents[0].tolist() == [-1, 0, 0, 1, 1, 3]
    assert [len(tokens[0]) for tokens, _ in calls] == [1, 1]  # only nodes with children are stepped
    first_children = calls[0]
    assert first_children[1].tolist() == [[-1]]


def test_static_paths_are_closed_under_prefixes() -> None:
    assert TreeConfig(paths=((0, 1, 2),)).paths == ((0,), (0, 1), (0, 1, 2))
