"""Adaptive tree sizes: the size rule, the cost measurement, and exact output at any size."""

import itertools
import math

import pytest
import tiny
import torch

from specflash import CycleCost, Draft, DraftConfig, SpeculativeGenerator, TreeConfig, autoregressive_generate
from specflash.draft import Drafter
from specflash.sizing import LONGEST_PAUSE, CyclePlanner, measure_cycle_cost, measured_sizes

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


def test_a_request_trusts_its_draft_as_far_as_the_target_accepts() -> None:
    cost = CycleCost(draft=1.0, verify=tuple(1.0 + 0.1 * n for n in range(9)))
    scores = torch.tensor([[0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92]]).log()
    planner = CyclePlanner(cost, rows=1)
    assert planner(scores) == cost.best_size(scores) == 8  # no record yet: the promises are taken at face value
    for _ in range(3):
        planner(scores)
        planner.record_drafted(0)  # the target refuses what the draft is sure of
    assert planner.trust < 0.1 and planner(scores) < 4
    for _ in range(40):  # the draft turns right: trusted again, but never beyond its own promises
        planner.record_drafted(round(2 * planner.last_promise))
        planner(scores)
    assert planner.trust == 1.0 and planner(scores) == 8
    assert cost.best_size(scores, trust=0.0) == 1


def test_drafting_pauses_while_it_does_not_pay_and_is_tried_again() -> None:
    cost = CycleCost(draft=1.0, verify=tuple(1.0 + 0.1 * n for n in range(9)))  # a plain step: 1.0
    scores = torch.full((1, 8), 0.9).log()
    planner = CyclePlanner(cost, rows=1)
    pauses = []
    for _ in range(11):
        assert planner.next_cycle_drafts()
        planner(scores)
        planner.record_drafted(0)  # nothing bought for two plain steps' time and more
        pause = 0
        while not planner.next_cycle_drafts():
            pause += 1
        pauses.append(pause)
    assert pauses == [0, 0, 1, 2, 4, 8, 16, 32, 64, LONGEST_PAUSE, LONGEST_PAUSE] and LONGEST_PAUSE == 128
    planner(scores)
    planner.record_drafted(3)  # the draft's try after a long pause pays: 4 tokens for 2.1 plain steps' time
    assert all(planner.next_cycle_drafts() for _ in range(5))


def test_a_draft_right_now_and_then_but_too_seldom_is_mostly_paused() -> None:
    cost = CycleCost(draft=1.0, verify=tuple(1.0 + 0.1 * n for n in range(9)))  # a plain step: 1.0
    planner = CyclePlanner(cost, rows=1)
    drafted = 0
    for _ in range(2000):
        if planner.next_cycle_drafts():
            assert planner(torch.full((1, 8), 0.9).log()) >= 1
            planner.record_drafted(drafted % 2)  # 1.5 tokens per cycle at best, for 2.8 plain steps' time
            drafted += 1
    assert drafted < 200  # a try after a pause is judged on its own, not on tokens bought before it


def test_a_draft_a_little_slower_than_plain_steps_is_not_paused() -> None:
    cost = CycleCost(draft=1.0, verify=tuple(1.0 + 0.1 * n for n in range(9)))
    planner = CyclePlanner(cost, rows=1)
    for _ in range(10):
        assert planner.next_cycle_drafts()
        assert planner(torch.full((1, 4), 0.9).log()) == 4
        planner.record_drafted(1)  # 2 tokens in 2.4 plain steps' time: 0.83 of plain decoding, within the noise


MILD = CycleCost(draft=1.0, verify=tuple(1.0 + 0.05 * n for n in range(TREE.total_tokens + 1)))


def make_drafts_sure_of_themselves(monkeypatch) -> None:
    """An untrained draft made sure of itself: near-one probabilities on tokens the target rarely picks."""
    monkeypatch.setattr(Drafter, "_logp", lambda self, predicted: (self.target.logits(predicted) * 100).log_softmax(-1))


def test_a_draft_sure_of_the_wrong_tokens_gets_small_trees_then_pauses(monkeypatch) -> None:
    make_drafts_sure_of_themselves(monkeypatch)
    target, inputs = tiny.llama(seed=2), tiny.text_inputs(seed=2)
    draft = Draft.for_target(target, DraftConfig(k=2), seed=2)
    result = SpeculativeGenerator(target, draft, TREE, cost=MILD).generate(inputs, max_new_tokens=30)
    assert result.new_token_ids == autoregressive_generate(target, inputs, max_new_tokens=30).new_token_ids
    stats = result.stats
    drafted = [size for size in stats.tree_sizes if size]
    assert stats.tau < 1.2 and drafted[0] >= TREE.depth and max(drafted[1:]) < drafted[0]  # a sure path, then less
    assert stats.tree_sizes.count(0) > len(drafted)  # most cycles are plain steps: drafting paused
    assert len(stats.draft_accepted) == len(drafted)


PAUSING = {
    "text, two rows": (tiny.llama, lambda: tiny.text_inputs(rows=2, seed=2)),
    "llava, two rows": (tiny.llava, lambda: tiny.llava_inputs([1, 2], seed=2)),
    "qwen, image and video": (tiny.qwen, lambda: tiny.qwen_inputs(images=1, video_frames=4, seed=2)),
}


@pytest.mark.parametrize("case", PAUSING)
def test_pauses_keep_the_output_exact_and_the_samples_repeatable(monkeypatch, case: str) -> None:
    make_drafts_sure_of_themselves(monkeypatch)
    make, make_inputs = PAUSING[case]
    target, inputs = make(seed=2), make_inputs()
    generator = SpeculativeGenerator(target, Draft.for_target(target, DraftConfig(k=2, latents=4), seed=2), TREE, MILD)
    result = generator.generate(inputs, max_new_tokens=30)
    assert result.new_token_ids == autoregressive_generate(target, inputs, max_new_tokens=30).new_token_ids
    assert 0 in result.stats.tree_sizes  # paused, and drafted again after the pause
    assert [size for size in result.stats.tree_sizes[result.stats.tree_sizes.index(0) :] if size]
    sampled = [generator.generate(inputs, max_new_tokens=30, temperature=1.0, seed=5) for _ in range(2)]
    assert sampled[0].new_token_ids == sampled[1].new_token_ids


def test_after_a_pause_the_draft_has_read_every_token_decoded_without_it(monkeypatch) -> None:
    target, inputs = tiny.llama(seed=2), tiny.text_inputs(seed=2)
    draft = tiny.fit_draft(target, inputs, max_new_tokens=40, config=DraftConfig(k=2))
    steady = SpeculativeGenerator(target, draft, TREE, cost=flat(TREE.total_tokens)).generate(inputs, max_new_tokens=40)
    turns = itertools.cycle([True, False, False])  # draft one cycle in three: pauses of two plain steps
    monkeypatch.setattr(CyclePlanner, "next_cycle_drafts", lambda self: next(turns))
    paused = SpeculativeGenerator(target, draft, TREE, cost=flat(TREE.total_tokens)).generate(inputs, max_new_tokens=40)
    assert paused.new_token_ids == steady.new_token_ids
    assert paused.stats.tree_sizes[:4] == [TREE.total_tokens, 0, 0, TREE.total_tokens]
    mean = [sum(s.draft_accepted) / len(s.draft_accepted) for s in (steady.stats, paused.stats)]
    assert mean[0] > 2 and mean[1] > mean[0] - 0.5  # the draft is as right after a pause as without one


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
