"""How many tree nodes a cycle verifies: as many of the best as pay for their verification here.

A node's cumulative draft probability estimates the chance that the target accepts it, so the n best
nodes add about p_1 + ... + p_n tokens to the cycle's bonus token (the estimate EAGLE-2 ranks nodes by).
Verifying them costs a target forward over n + 1 tokens on top of the cycle's draft work. Each cycle
keeps the n with the most expected tokens per second, by a cost curve measured on this machine: where a
tree forward costs about what a one-token forward costs (as a large target's should on a GPU) that is the whole
budget, where it grows with every token (a small target on a CPU core) it is fewer. A draft's probabilities
can promise more than the target grants (a draft sure of a reply the target does not give) or less, so
each request scales them by how many of its promised tokens the target has accepted lately, and pauses
drafting while it does not pay at all (`CyclePlanner`). Only which nodes are verified changes, never
how, so output stays exactly the target's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial

import torch

from specflash.draft import Drafter
from specflash.targets import Prefill, Target, TargetState
from specflash.timing import timings
from specflash.tree import Tree, TreeConfig, grow

REPEATS = 2  # timings per measured point; the fastest is kept, as disturbances only add time
# A request starts out trusting its draft's promises as if they had been kept for this many tokens; the
# tokens promised and accepted before count MEMORY times as much after each drafted cycle, so the scale
# follows the draft's recent record (about ten cycles) and a draft that turns right is trusted again.
PRIOR_TOKENS = 1.0
MEMORY = 0.9
# Drafting pauses when drafted cycles have lately bought less than this share of a plain step's tokens
# per second: the measured costs are only good to some tens of percent, so only a clear loss pauses.
PAUSE_BELOW = 0.75
# Drafted cycles a request runs before its first pause: one or two unlucky cycles are not a record.
FIRST_PAUSE_AFTER = 3
# The most plain cycles between two tries of a draft that does not pay: a try costs a few plain steps.
LONGEST_PAUSE = 128


@dataclass(frozen=True)
class CycleCost:
    """Seconds of one speculative cycle by the number of tree nodes it verifies."""

    draft: float  # the draft's work per cycle: growing the tree and catching up on the accepted path
    verify: tuple[float, ...]  # verify[n]: the target forward over n nodes and the root, n = 0 .. most

    def __post_init__(self) -> None:
        times = (self.draft, *self.verify)
        if len(self.verify) < 2 or not all(math.isfinite(t) and t >= 0 for t in times):
            raise ValueError("a cycle cost needs finite, non-negative verify times for 0 nodes, 1 node and on")

    @cached_property
    def _cycle_seconds(self) -> torch.Tensor:
        """Seconds of a cycle verifying n = 1, 2, ... nodes."""
        return self.draft + torch.tensor(self.verify[1:], dtype=torch.float64)

    def best_size(self, scores: torch.Tensor, trust: float = 1.0) -> int:
        """How many of the best nodes to verify (at least 1). scores [B, N]: each row's N best nodes'
        cumulative draft log-probabilities, best first; N beyond the measured curve is capped. `trust`
        scales the probabilities: the tokens the target accepts per token they promise."""
        most = min(scores.shape[1], len(self.verify) - 1)
        promised = scores[:, :most].double().exp().sum(0).cumsum(0)  # draft tokens, n = 1 .. most
        expected = scores.shape[0] + trust * promised.cpu()
        return int((expected / self._cycle_seconds[:most]).argmax()) + 1


class CyclePlanner:
    """One request's adaptive cycles: whether each drafts, and how many nodes its tree verifies.

    Trees are sized by `cost.best_size`, trusting the draft's promises as far as the target has kept
    them lately. While drafted cycles have lately bought clearly fewer tokens per second than plain steps
    would (PAUSE_BELOW; a draft of no use for this reply), drafting pauses: the cycle verifies the root
    alone, a plain decoding step. After each pause the draft is tried again; the next pause doubles when
    it still does not pay, up to LONGEST_PAUSE, and halves when it does.
    """

    def __init__(self, cost: CycleCost, rows: int) -> None:
        self.cost, self.rows = cost, rows
        # The record the pauses follow, MEMORY-weighted over the past cycles, drafted or not, so that a
        # try after a long pause decides: drafted cycles, their seconds and the draft tokens they bought.
        self.cycles = self.seconds = self.bought = 0.0
        # The record trust follows, MEMORY-weighted over the past drafted cycles only, so that a try
        # after a pause keeps the trust the draft had and its tree stays small: draft tokens promised
        # and accepted (all rows together).
        self.promised = self.granted = 0.0
        self.size = 0  # nodes the last drafted tree verified
        self.last_promise = 0.0
        self.pause = self.rest = 0  # the last pause's length, and its plain cycles still to come
        self.drafted_cycles = 0  # in this request, unweighted

    @property
    def trust(self) -> float:
        """Draft tokens the target accepts per token the draft's probabilities promise, lately; at most 1:
        more would grow trees past the sizes the cost curve (which leaves out the per-node work of
        building and accepting a real tree) found best by hand on the world targets (docs/results.md)."""
        return min(1.0, (self.granted + PRIOR_TOKENS) / (self.promised + PRIOR_TOKENS))

    def next_cycle_drafts(self) -> bool:
        """Whether the next cycle drafts; False for a plain step of a pause (and counted as one)."""
        if not self.rest:
            return True
        self.rest -= 1
        self.cycles, self.seconds, self.bought = MEMORY * self.cycles, MEMORY * self.seconds, MEMORY * self.bought
        return False

    def __call__(self, scores: torch.Tensor) -> int:
        """The size rule `grow` calls (`Size`)."""
        self.size = self.cost.best_size(scores, self.trust)
        self.last_promise = float(scores[:, : self.size].double().exp().sum())
        return self.size

    def record_drafted(self, draft_tokens: int) -> None:
        """After a drafted cycle's verification: the target accepted `draft_tokens` of its nodes."""
        self.cycles = MEMORY * self.cycles + 1
        self.seconds = MEMORY * self.seconds + self.cost.draft + self.cost.verify[self.size]
        self.bought = MEMORY * self.bought + draft_tokens
        self.promised = MEMORY * self.promised + self.last_promise
        self.granted = MEMORY * self.granted + draft_tokens
        self.drafted_cycles += 1
        # tokens per second of the drafted cycles against `rows` tokens per plain step (multiplied out)
        if (self.rows * self.cycles + self.bought) * self.cost.verify[0] >= PAUSE_BELOW * self.rows * self.seconds:
            self.pause //= 2  # a draft right now and then is not right again: the next pause is shorter
        elif self.drafted_cycles >= FIRST_PAUSE_AFTER:
            self.pause = self.rest = min(max(1, 2 * self.pause), LONGEST_PAUSE)


def measured_sizes(most: int) -> list[int]:
    """The tree sizes (nodes besides the root) a cost curve is timed at, largest first: `most`, half and
    a quarter of it, and 0. Few, as the first request pays for them; a large target on a GPU turns from
    flat to rising somewhere among them."""
    return sorted({0, most // 4, most // 2, most}, reverse=True)


def _fastest_seconds(run: Callable[[], object], device: torch.device, warm_up: bool) -> float:
    """The shortest wall time of `run` over REPEATS calls (after an untimed one if `warm_up`)."""
    return min(timings(run, device, REPEATS, warm_up))


def measure_cycle_cost(
    target: Target,
    state: TargetState,
    drafter: Drafter,
    prefill: Prefill,
    root: torch.Tensor,
    root_logp: torch.Tensor,
    tree: TreeConfig,
) -> CycleCost:
    """Time the cycle on this request's own prefix: growing the tree and a catch-up pass over the longest
    path a cycle can accept (depth + 1 tokens), and verifying trees of measured_sizes(tree.total_tokens)
    nodes, interpolated between them (at most nine verifications and three draft cycles). The target's
    cache and the drafter are left as they were."""
    device = target.device
    batch = root.shape[0]
    nodes = tree.depth + 1
    features = prefill.features[:, -1:].expand(batch, nodes, -1)
    following = root[:, None].expand(batch, nodes)
    full = torch.full_like(root, nodes)

    def draft_cycle() -> None:
        with drafter.trial():
            drafter.begin_tree()
            grow(tree, root, root_logp, drafter.step)
            drafter.end_tree()
            drafter.catch_up(features, following, full)

    draft = _fastest_seconds(draft_cycle, device, warm_up=True)
    none_kept = torch.zeros(batch, 0, dtype=torch.long, device=device)
    nothing = torch.zeros(batch, dtype=torch.long, device=device)

    def verify(star: Tree) -> None:
        target.verify(state, star.tokens, star.ancestors, star.depths)
        target.keep(state, star.size, none_kept, nothing)  # drop the whole tree again

    points: dict[int, float] = {}
    for size in measured_sizes(tree.total_tokens):
        star = Tree.star(root, size)  # one level deep: its nodes take the position of the next token
        points[size] = _fastest_seconds(partial(verify, star), device, warm_up=not points)  # largest first warms up
    sizes = sorted(points)
    curve = torch.tensor([points[s] for s in sizes], dtype=torch.float64)
    between = torch.arange(tree.total_tokens + 1, dtype=torch.float64)
    verify_times = _interpolate(between, torch.tensor(sizes, dtype=torch.float64), curve)
    return CycleCost(draft, tuple(verify_times.cummax(0).values.tolist()))  # timing noise is not a saving


def _interpolate(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ys(xs) at x, for xs ascending that span x."""
    right = torch.searchsorted(xs, x).clamp(1, len(xs) - 1)
    left = right - 1
    share = (x - xs[left]) / (xs[right] - xs[left])
    return ys[left] + share * (ys[right] - ys[left])
