"""Adaptive tree sizes: the size rule, the cost measurement, and exact output at any size."""

import math

import pytest
import tiny
import torch

from specflash import CycleCost, Draft, DraftConfig, SpeculativeGenerator, TreeConfig, autoregressive_generate
from specflash.draft import Drafter
from specflash.sizing import measure_cycle_cost, measured_sizes

TREE = TreeConfig(depth=5, top_k=4, total_tokens=24)


def flat(nodes: int) -> CycleCost:
    """A verification that costs the same at any size (a large target on a GPU)."""
    return CycleCost(draft=1.0, verify=(1.0,) * (nodes + 1))


def steep(nodes: int) -> CycleCost:
    """Every verified node costs as much as the whole draft (a small target on a CPU core)."""
    return CycleCost(draft=1.0, verify=tuple(1.0 + n for n in range(nodes + 1)))


def test_best_size_maximises_expected_tokens_per_second() -> None:
    probs = torch.tensor([[0.9, 0.5, 0.3, 0.1, 0.05]])
    scores = probs.log()
    assert flat(5).best_size(scores) == 5  # every node adds tokens and costs nothing more
    assert steep(5).best_size(scores) == 1
    cost = CycleCost(draft=2.0, verify=(1.0, 1.1, 1.2, 1.5, 2.5, 3.5))
    rates = [(1 + float(probs[0, :n].sum())) / (2.0 + cost.verify[n]) for n in range(1, 6)]
    assert cost.best_size(scores) == 1 + max(range(5), key=rates.__getitem__) == 3


def test_best_size_adds_up_the_rows_and_stops_at_the_measured_curve() -> None:
    cost = CycleCost(draft=1.0, verify=(1.0, 1.2, 1.4, 1.6, 1.8))
    sure, unsure = torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0.05, 0.04, 0.03, 0.02])
    # alone, the unsure row verifies one node; beside a sure row the batch verifies more
    assert cost.best_size(unsure.log()[None]) == 1
    assert cost.best_size(torch.stack([sure, unsure]).log()) == 4
    assert flat(3).best_size(torch.zeros(1, 10)) == 3


@pytest.mark.parametrize(
    ("draft", "verify"), [(-1.0, (1.0, 2.0)), (1.0, ()), (1.0, (1.0,)), (1.0, (1.0, math.inf)), (math.nan, (1.0, 2.0))]
)
def test_cycle_cost_refuses_unusable_times(draft: float, verify: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="finite, non-negative verify times"):
        CycleCost(draft=draft, verify=verify)


def test_measured_sizes_span_the_budget() -> None:
    assert measured_sizes(60) == [60, 30, 15, 0]
    assert measured_sizes(1) == [1, 0]


def test_measuring_leaves_target_and_drafter_as_they_were() -> None:
    target, inputs = tiny.qwen(seed=2), tiny.qwen_inputs(images=1, seed=2)
    drafter = Drafter(Draft.for_target(target, DraftConfig(k=2, latents=4), seed=2), target)
    state, prefill = target.prefill(target.prepare(inputs))
    first = prefill.logits.argmax(-1)
    root_logp = drafter.start(prefill, first)
    kept = [t.clone() for layer in state.cache.layers for t in (layer.keys, layer.values)]
    before = (state.valid.clone(), state.lengths.clone())
    drafted = (drafter.cache.length, drafter.valid.clone(), drafter.next_position.clone(), drafter.root.clone())
    forwards = drafter.forwards
    cost = measure_cycle_cost(target, state, drafter, prefill, first, root_logp, TREE)
    assert len(cost.verify) == TREE.total_tokens + 1
    assert list(cost.verify) == sorted(cost.verify) and cost.draft > 0
    after = [t for layer in state.cache.layers for t in (layer.keys, layer.values)]
    assert len(after) == len(kept) and all(torch.equal(a, b) for a, b in zip(after, kept, strict=True))
    assert torch.equal(state.valid, before[0]) and torch.equal(state.lengths, before[1])
    assert drafter.cache.length == drafted[0] and drafter.forwards == forwards
    now = (drafter.valid, drafter.next_position, drafter.root)
    assert all(torch.equal(a, b) for a, b in zip(drafted[1:], now, strict=True))


@pytest.mark.parametrize("make", [tiny.llava, tiny.qwen])
def test_any_sizes_keep_the_output_exact(make) -> None:
    target = make(seed=2)
    inputs = tiny.llava_inputs([1], seed=2) if make is tiny.llava else tiny.qwen_inputs(images=1, seed=2)
    plain = autoregressive_generate(target, inputs, max_new_tokens=40).new_token_ids
    draft = tiny.fit_draft(target, inputs, max_new_tokens=40, config=DraftConfig(k=2))
    sizes = {}
    for name, cost in (("flat", flat(TREE.total_tokens)), ("steep", steep(TREE.total_tokens))):
        result = SpeculativeGenerator(target, draft, TREE, cost=cost).generate(inputs, max_new_tokens=40)
        assert result.new_token_ids == plain
        sizes[name] = result.stats.tree_sizes
    assert set(sizes["flat"]) == {TREE.total_tokens}
    assert max(sizes["steep"]) < TREE.total_tokens


def test_a_generator_measures_once_per_batch_size() -> None:
    target, one, two = tiny.llama(seed=2), tiny.text_inputs(seed=2), tiny.text_inputs(rows=2, seed=2)
    draft = tiny.fit_draft(target, one, max_new_tokens=20)
    generator = SpeculativeGenerator(target, draft, TREE)
    first = generator.generate(one, max_new_tokens=20)
    again = generator.generate(one, max_new_tokens=20)
    assert first.new_token_ids == again.new_token_ids
    assert first.stats.sizing_time > 0 and again.stats.sizing_time == 0
    assert set(generator.measured) == {1}
    # the measured cost sizes the trees of the measuring request itself, which the measurement left intact
    replay = SpeculativeGenerator(target, draft, TREE, cost=generator.measured[1]).generate(one, max_new_tokens=20)
    assert replay.stats.tree_sizes == first.stats.tree_sizes and replay.stats.sizing_time == 0
    assert replay.stats.accept_lengths == first.stats.accept_lengths
    assert generator.generate(two, max_new_tokens=20).stats.sizing_time > 0
    assert set(generator.measured) == {1, 2}


def test_the_measured_cost_sizes_the_trees(monkeypatch) -> None:
    monkeypatch.setattr("specflash.generate.measure_cycle_cost", lambda *args: steep(TREE.total_tokens))
    target, inputs = tiny.llama(seed=2), tiny.text_inputs(seed=2)
    draft = tiny.fit_draft(target, inputs, max_new_tokens=20)
    result = SpeculativeGenerator(target, draft, TREE).generate(inputs, max_new_tokens=20)
    assert result.new_token_ids == autoregressive_generate(target, inputs, max_new_tokens=20).new_token_ids
    assert max(result.stats.tree_sizes) < TREE.total_tokens


def test_one_generator_samples_the_same_tokens_for_a_seed() -> None:
    target, inputs = tiny.llama(seed=2), tiny.text_inputs(seed=2)
    generator = SpeculativeGenerator(target, Draft.for_target(target, DraftConfig(k=2), seed=2), TREE)
    runs = [generator.generate(inputs, max_new_tokens=24, temperature=1.0, seed=7) for _ in range(2)]
    assert runs[0].stats.sizing_time > 0  # the first measured, the second did not
    assert runs[0].new_token_ids == runs[1].new_token_ids
    assert runs[0].stats.tree_sizes == runs[1].stats.tree_sizes


def test_fixed_and_static_trees_are_not_measured() -> None:
    target = tiny.llama(seed=2)
    draft = Draft.for_target(target, DraftConfig(), seed=2)
    inputs = tiny.text_inputs(seed=2)
    for tree in (TreeConfig(depth=5, top_k=4, total_tokens=24, adaptive=False), TreeConfig(paths=((0,), (0, 0)))):
        generator = SpeculativeGenerator(target, draft, tree)
        stats = generator.generate(inputs, max_new_tokens=12).stats
        assert stats.sizing_time == 0 and not generator.measured
        assert set(stats.tree_sizes) == {tree.total_tokens}
