"""The decode loop: prefill, draft a tree, verify it in one target forward, accept, feed back.

`autoregressive_generate` is the same harness with a one-node tree and no draft, so the two differ only
in what speculative decoding adds, and both return the same result type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from specflash import timing
from specflash.accept import Acceptance, Sampling, accept
from specflash.draft import Draft, Drafter
from specflash.sizing import CycleCost, CyclePlanner, measure_cycle_cost
from specflash.targets import Prefill, Target, TargetState
from specflash.tree import Tree, TreeConfig, grow

# Called with (row, token ids) each time a row's output grows.
StreamCallback = Callable[[int, list[int]], None]


@dataclass
class GenerationStats:
    """`cycles` counts target forwards that produced tokens, prefill included; `accept_lengths[row]`
    lists the tokens each of them added to that row (bonus included), so tau = new_tokens over the
    number of (row, forward) pairs, and plain decoding has tau = 1."""

    new_tokens: int = 0
    cycles: int = 0
    tau: float = 0.0
    accept_lengths: list[list[int]] = field(default_factory=list)
    alpha_by_depth: list[float] = field(default_factory=list)
    # Draft tokens the target accepted in each (unfinished row, drafted cycle), before any stop cut.
    draft_accepted: list[int] = field(default_factory=list)
    draft_forwards: int = 0
    # Draft nodes the target verified in each verification cycle (the tree's size, root excluded).
    tree_sizes: list[int] = field(default_factory=list)
    wall_time: float = 0.0
    prefill_time: float = 0.0
    # Measuring this machine's cycle cost for an adaptive tree: the first request of each batch size.
    sizing_time: float = 0.0
    draft_time: float = 0.0
    verify_time: float = 0.0


@dataclass
class GenerationResult:
    new_token_ids: list[list[int]]
    stats: GenerationStats


class _Clock:
    """Wall-clock phases, synchronising the GPU so each phase is charged its own work."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = self.mark = self.now()

    def now(self) -> float:
        return timing.now(self.device)

    def lap(self) -> float:
        now = self.now()
        elapsed, self.mark = now - self.mark, now
        return elapsed


class _Output:
    """Per-row output with stopping (stop tokens, max_new_tokens) and streaming."""

    def __init__(self, rows: int, max_new_tokens: int, stop_ids: list[int], stream: StreamCallback | None):
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.accept_lengths: list[list[int]] = [[] for _ in range(rows)]
        self.finished = [False] * rows
        self.max_new_tokens, self.stop_ids, self.stream = max_new_tokens, set(stop_ids), stream

    @property
    def done(self) -> bool:
        return all(self.finished)

    def add(self, row_tokens: list[list[int]]) -> None:
        for row, tokens in enumerate(row_tokens):
            if self.finished[row]:
                continue
            room = self.max_new_tokens - len(self.tokens[row])
            taken = []
            for token in tokens[:room]:
                taken.append(token)
                if token in self.stop_ids:
                    self.finished[row] = True
                    break
            self.tokens[row].extend(taken)
            self.accept_lengths[row].append(len(taken))
            if len(self.tokens[row]) >= self.max_new_tokens:
                self.finished[row] = True
            if self.stream and taken:
                self.stream(row, taken)


def _check_request(target: Target, inputs: dict[str, torch.Tensor], max_new_tokens: int) -> None:
    """The request must fit the context when decoded plainly (its last token is never fed back);
    speculative cycles whose tree would reach past it decode plainly instead."""
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    prompt = inputs["input_ids"].shape[1]
    needed = prompt + max_new_tokens - 1
    if needed > target.max_positions:
        raise ValueError(
            f"prompt ({prompt} tokens) + max_new_tokens ({max_new_tokens}) - 1 = {needed} positions exceeds "
            f"the model's context of {target.max_positions}"
        )


def alpha_by_depth(accepted_per_cycle: list[int], depth: int) -> list[float]:
    """alpha_d: of the cycles that accepted d-1 draft tokens, the share that accepted a d-th."""
    alphas = []
    for d in range(1, depth + 1):
        reached = sum(1 for a in accepted_per_cycle if a >= d - 1)
        alphas.append(sum(1 for a in accepted_per_cycle if a >= d) / reached if reached else 0.0)
    return alphas


@dataclass
class _Run:
    """A generation after prefill: the first new token is chosen and recorded."""

    sampling: Sampling
    generator: torch.Generator
    clock: _Clock
    stats: GenerationStats
    state: TargetState
    prefill: Prefill
    first: torch.Tensor
    output: _Output


def _start(
    target: Target,
    inputs: Any,
    max_new_tokens: int,
    sampling: Sampling,
    seed: int,
    stop_token_ids: list[int] | None,
    stream: StreamCallback | None,
) -> _Run:
    batch = target.prepare(inputs)
    _check_request(target, batch, max_new_tokens)
    generator = torch.Generator().manual_seed(seed)
    stop = target.stop_token_ids if stop_token_ids is None else stop_token_ids
    clock, stats = _Clock(target.device), GenerationStats()
    state, prefill = target.prefill(batch)
    first = sampling.choose(prefill.logits, generator)
    output = _Output(first.shape[0], max_new_tokens, stop, stream)
    output.add([[t] for t in first.tolist()])
    stats.cycles = 1
    return _Run(sampling, generator, clock, stats, state, prefill, first, output)


def _finish(output: _Output, clock: _Clock, stats: GenerationStats) -> GenerationResult:
    stats.wall_time = clock.now() - clock.start
    stats.accept_lengths = output.accept_lengths
    stats.new_tokens = sum(len(t) for t in output.tokens)
    pairs = sum(len(a) for a in output.accept_lengths)
    stats.tau = stats.new_tokens / pairs if pairs else 0.0
    return GenerationResult(output.tokens, stats)


@torch.inference_mode()
def autoregressive_generate(
    target: Target,
    inputs: Any,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    stop_token_ids: list[int] | None = None,
    stream: StreamCallback | None = None,
) -> GenerationResult:
    """Plain decoding, one target forward per token, in the same harness as speculative decoding."""
    run = _start(target, inputs, max_new_tokens, Sampling(temperature, top_p, top_k), seed, stop_token_ids, stream)
    state, output, stats, token = run.state, run.output, run.stats, run.first
    rows = token.shape[0]
    stats.prefill_time = run.clock.lap()
    one = torch.ones(rows, 1, 1, dtype=torch.bool, device=token.device)
    zero = torch.zeros(rows, 1, dtype=torch.long, device=token.device)
    while not output.done:
        logits, _ = target.verify(state, token[:, None], one, zero)
        target.keep(state, 1, zero, torch.ones(rows, dtype=torch.long, device=token.device))
        token = run.sampling.choose(logits[:, 0], run.generator)
        output.add([[t] for t in token.tolist()])
        stats.cycles += 1
    stats.verify_time = run.clock.lap()
    return _finish(output, run.clock, stats)


class SpeculativeGenerator:
    """FLASH / EAGLE-style speculative decoding; output equals the target's own (lossless).

    An adaptive tree (the default) sizes each cycle's tree by `cost`, or, without one, by the cost this
    generator measures on its first request of each batch size (sizing.py) and keeps: so one generator
    samples the same tokens for the same seed, while another, measuring again, may size some trees
    differently (greedy output never changes). Pass a `cost` to fix the sizes across processes.
    """

    def __init__(
        self, target: Target, draft: Draft, tree: TreeConfig | None = None, cost: CycleCost | None = None
    ) -> None:
        draft.check_target(target)
        self.target, self.draft = target, draft.to(device=target.device, dtype=target.dtype).eval()
        self.tree = tree or TreeConfig()
        if self.tree.widest_rank > target.vocab_size:
            raise ValueError(
                f"the tree asks for {self.tree.widest_rank} children per node but the vocabulary has "
                f"{target.vocab_size} tokens"
            )
        self.cost = cost
        self.measured: dict[int, CycleCost] = {}  # batch size -> the cost measured for it

    def _planner(self, run: _Run, drafter: Drafter, root_logp: torch.Tensor) -> CyclePlanner | None:
        """An adaptive tree's plan for this request, measuring the cost on its first batch size."""
        if not self.tree.adaptive or self.tree.is_static:
            return None
        rows = run.first.shape[0]
        if self.cost is not None:
            return CyclePlanner(self.cost, rows)
        if rows not in self.measured:
            self.measured[rows] = measure_cycle_cost(
                self.target, run.state, drafter, run.prefill, run.first, root_logp, self.tree
            )
            run.stats.sizing_time = run.clock.lap()
        return CyclePlanner(self.measured[rows], rows)

    @torch.inference_mode()
    def generate(
        self,
        inputs: Any,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        stop_token_ids: list[int] | None = None,
        stream: StreamCallback | None = None,
    ) -> GenerationResult:
        target = self.target
        sampling = Sampling(temperature, top_p, top_k)
        run = _start(target, inputs, max_new_tokens, sampling, seed, stop_token_ids, stream)
        state, prefill, output, stats, clock = run.state, run.prefill, run.output, run.stats, run.clock
        root = run.first
        drafter = Drafter(self.draft, target)
        root_logp = drafter.start(prefill, root)
        stats.prefill_time = clock.lap()
        planner = None if output.done else self._planner(run, drafter, root_logp)
        plain_steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (root features, bonus) the draft has not seen
        accepted_per_cycle: list[int] = []
        while not output.done:
            # A tree as deep as configured must stay inside the context for the rows still decoding; finished
            # rows run on (their output frozen) and may pass it, harmless with the position-free rotary
            # embeddings a Target takes.
            lengths = state.lengths.tolist()
            deepest = max(lengths[row] for row, done in enumerate(output.finished) if not done) + self.tree.depth
            fits = deepest < target.max_positions
            drafting = fits and (planner is None or planner.next_cycle_drafts())
            if drafting:
                if plain_steps:  # a pause ended: the draft reads the tokens decoded without it, in one pass
                    root_logp = drafter.catch_up(*_plain_catch_up_inputs(plain_steps))
                    plain_steps = []
                drafter.begin_tree()
                tree = grow(self.tree, root, root_logp, drafter.step, planner)
                drafter.end_tree()
            else:
                tree = Tree.star(root, 0)
            stats.draft_time += clock.lap()
            stats.tree_sizes.append(tree.size - 1)
            logits, features = target.verify(state, tree.tokens, tree.ancestors, tree.depths)
            result = accept(tree, logits, sampling, run.generator)
            target.keep(state, tree.size, result.path, result.length)
            if planner is not None and drafting:
                planner.record_drafted(int(result.length.sum()) - result.length.shape[0])
            stats.verify_time += clock.lap()
            active = [row for row, done in enumerate(output.finished) if not done]
            output.add(_new_tokens(tree, result))
            if drafting:
                accepted_per_cycle.extend(int(result.length[row]) - 1 for row in active)
            stats.cycles += 1
            if output.done:
                break
            if drafting:
                root_logp = drafter.catch_up(*_catch_up_inputs(tree, result, features))
            else:
                plain_steps.append((features, result.bonus[:, None]))
            root = result.bonus
            stats.draft_time += clock.lap()
        stats.draft_forwards = drafter.forwards
        stats.alpha_by_depth = alpha_by_depth(accepted_per_cycle, self.tree.depth)
        stats.draft_accepted = accepted_per_cycle
        return _finish(output, clock, stats)


def _new_tokens(tree: Tree, result: Acceptance) -> list[list[int]]:
    """Accepted draft tokens (the path without its root) then the bonus token, per row."""
    path_tokens = tree.tokens.gather(1, result.path).tolist()
    lengths, bonus = result.length.tolist(), result.bonus.tolist()
    return [[*path_tokens[row][1 : lengths[row]], bonus[row]] for row in range(len(lengths))]


def _plain_catch_up_inputs(
    steps: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain steps' root features and bonus tokens as one path that every row accepted whole."""
    features, following = (torch.cat(parts, dim=1) for parts in zip(*steps, strict=True))
    return features, following, torch.full_like(following[:, 0], len(steps))


def _catch_up_inputs(
    tree: Tree, result: Acceptance, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target features along the path, and the token that follows each path node (then the bonus)."""
    rows = torch.arange(tree.tokens.shape[0], device=features.device)[:, None]
    path_features = features[rows, result.path]
    following = torch.cat([tree.tokens.gather(1, result.path)[:, 1:], result.bonus[:, None]], dim=1)
    following = following.scatter(1, (result.length - 1)[:, None], result.bonus[:, None])
    return path_features, following, result.length
