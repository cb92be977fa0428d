"""Generation statistics hold together, streaming delivers the output, stopping is honoured."""

import tiny

from specflash import Draft, DraftConfig, SpeculativeGenerator, TreeConfig, autoregressive_generate


def test_speculative_stats_hold_together() -> None:
    target, inputs = tiny.llava(seed=2), tiny.llava_inputs([1], seed=2)
    draft = tiny.fit_draft(target, inputs, max_new_tokens=40)
    tree = TreeConfig(depth=5, top_k=4, total_tokens=20, adaptive=False)  # every cycle drafts its whole tree
    result = SpeculativeGenerator(target, draft, tree).generate(inputs, max_new_tokens=40)
    stats = result.stats
    assert sum(stats.accept_lengths[0]) == len(result.new_token_ids[0]) == stats.new_tokens
    assert len(stats.accept_lengths[0]) == stats.cycles
    assert len(stats.tree_sizes) == stats.cycles - 1 and all(1 <= s <= 20 for s in stats.tree_sizes)
    assert abs(stats.tau - stats.new_tokens / stats.cycles) < 1e-12
    assert stats.tau > 1
    assert len(stats.alpha_by_depth) == 5 and all(0 <= a <= 1 for a in stats.alpha_by_depth)
    assert stats.alpha_by_depth[0] > 0
    # Catch-up after every cycle but the last, plus depth-1 tree steps per cycle, plus the draft prefill.
    assert stats.draft_forwards == 1 + (stats.cycles - 1) * 4 + (stats.cycles - 2)
    assert 0 < stats.prefill_time + stats.draft_time + stats.verify_time <= stats.wall_time


def test_plain_loop_has_tau_one() -> None:
    target, inputs = tiny.llama(seed=2), tiny.text_inputs(rows=2, seed=2)
    result = autoregressive_generate(target, inputs, max_new_tokens=20)
    stats = result.stats
    assert stats.tau == 1.0
    assert stats.new_tokens == sum(len(row) for row in result.new_token_ids)
    assert all(set(lengths) == {1} for lengths in stats.accept_lengths)
    assert stats.draft_forwards == 0 and stats.draft_time == 0


def test_streaming_delivers_exactly_the_output() -> None:
    target, inputs = tiny.llava(seed=2), tiny.llava_inputs([1, 0, 2], seed=2)
    streamed: dict[int, list[int]] = {}
    draft = Draft.for_target(target, DraftConfig())
    result = SpeculativeGenerator(target, draft).generate(
        inputs, max_new_tokens=30, stream=lambda row, tokens: streamed.setdefault(row, []).extend(tokens)
    )
    assert [streamed.get(row, []) for row in range(3)] == result.new_token_ids


def test_stop_token_and_length_limits() -> None:
    target, inputs = tiny.llava(seed=2), tiny.llava_inputs([1, 0, 2], seed=2)
    draft = Draft.for_target(target, DraftConfig())
    full = SpeculativeGenerator(target, draft).generate(inputs, max_new_tokens=48).new_token_ids
    stopped = [row for row in full if row[-1] == tiny.EOS]
    assert stopped, "the fixture should have a row that stops on its own"
    assert all(row.count(tiny.EOS) == 1 for row in stopped)
    short = SpeculativeGenerator(target, draft).generate(inputs, max_new_tokens=5).new_token_ids
    assert short == [row[:5] for row in full]
    custom_stop = full[0][3]
    custom = SpeculativeGenerator(target, draft).generate(inputs, max_new_tokens=48, stop_token_ids=[custom_stop])
    assert custom.new_token_ids[0] == full[0][: full[0].index(custom_stop) + 1]


def test_semi_autoregressive_draft_needs_fewer_forwards() -> None:
    target, inputs = tiny.llava(seed=2), tiny.llava_inputs([1], seed=2)
    tree = TreeConfig(depth=6, top_k=4, total_tokens=20, adaptive=False)  # untrained drafts: never paused
    forwards = {}
    for k in (1, 3):
        draft = Draft.for_target(target, DraftConfig(k=k))
        stats = SpeculativeGenerator(target, draft, tree).generate(inputs, max_new_tokens=40).stats
        decode_cycles = stats.cycles - 1
        # Prefill, then per cycle ceil(6 / k) - 1 group passes, and a catch-up after all but the last.
        assert stats.draft_forwards == 1 + decode_cycles * (-(-6 // k) - 1) + (decode_cycles - 1)
        forwards[k] = (stats.draft_forwards - 1) / decode_cycles
    assert forwards[3] < 0.6 * forwards[1]
