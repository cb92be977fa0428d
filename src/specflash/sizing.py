"""How many tree nodes a cycle verifies: as many of the best as pay for their verification here.

A node's cumulative draft probability estimates the chance that the target accepts it, so the n best
nodes add about p_1 + ... + p_n tokens to the cycle's bonus token (the estimate EAGLE-2 ranks nodes by).
Verifying them costs a target forward over n + 1 tokens on top of the cycle's draft work. Each cycle
keeps the n with the most expected tokens per second, by a cost curve measured on this machine: where a
tree forward costs about what a one-token forward costs (as a large target's should on a GPU) that is the whole
budget, where it grows with every token (a small target on a CPU core) it is fewer. Only which nodes are
verified changes, never how, so output stays exactly the target's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from specflash.draft import Drafter
from specflash.targets import Prefill, Target, TargetState
from specflash.timing import timings
from specflash.tree import Tree, TreeConfig, grow

REPEATS = 2  # timings per measured point; the fastest is kept, as disturbances only add time


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

    def best_size(self, scores: torch.Tensor) -> int:
        """How many of the best nodes to verify (at least 1). scores [B, N]: each row's N best nodes'
        cumulative draft log-probabilities, best first; N beyond the measured curve is capped."""
        most = min(scores.shape[1], len(self.verify) - 1)
        expected = scores.shape[0] + scores[:, :most].double().exp().sum(0).cumsum(0)  # tokens, n = 1 .. most
        return int((expected.cpu() / self._cycle_seconds[:most]).argmax()) + 1


def measured_sizes(most: int) -> list[int]:
    """The tree sizes (nodes besides the root) a cost curve is timed at, largest first: `most`, half and
    a quarter of it, and 0. Few, as the first request pays for them; a large target on a GPU turns from
    flat to rising somewhere among them."""
    return sorted({0, most // 4, most // 2, most}, reverse=True)


def _fastest_seconds(run: Callable[[], object], device: torch.device, warm_up: bool) -> float:
    """The shortest wall time of `run` over REPEATS calls (after an untimed one if `warm_up`)."""
    return min(timings(run, device, REPEATS, warm_up))


def _star(root: torch.Tensor, nodes: int) -> Tree:
    """`nodes` children of the root: a tree of the size to time, at most one level deep, so no position
    reaches past what the request's lookahead allowed (the cost does not depend on the shape)."""
    batch = root.shape[0]
    tokens = root[:, None].expand(batch, nodes + 1)
    parents = torch.zeros_like(tokens)
    parents[:, 0] = -1
    return Tree.from_parents(tokens, parents, depth=1)


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
    points: dict[int, float] = {}
    for size in measured_sizes(tree.total_tokens):
        star = _star(root, size)

        def verify(star: Tree = star) -> None:
            target.verify(state, star.tokens, star.ancestors, star.depths)
            target.keep(state, star.size, none_kept, nothing)  # drop the whole tree again

        points[size] = _fastest_seconds(verify, device, warm_up=not points)  # the largest first warms up
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
